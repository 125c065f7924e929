package dev.pyner.artifact;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import dev.pyner.PynerException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The parsed manifest {@code pyner.json} of an artifact folder (see ARCHITECTURE.md, "The
 * artifact"). {@link #read(Path)} checks its shape and version, {@link #checkFiles()} every file's
 * size and sha256. Immutable.
 */
public final class Manifest {

    /** The manifest's {@code format} value. */
    public static final String FORMAT = "pyner-artifact";
    /** The newest artifact format this library reads. */
    public static final int FORMAT_VERSION = 1;
    /** Manifest file name. */
    public static final String MANIFEST = "pyner.json";
    /** Model file name. */
    public static final String MODEL_FILE = "model.onnx";
    /** Tokenizer file name. */
    public static final String TOKENIZER_FILE = "tokenizer.json";
    /** Config file name. */
    public static final String CONFIG_FILE = "config.json";
    /** DJL serving.properties file name. */
    public static final String SERVING_FILE = "serving.properties";
    /** Golden fixtures file name. */
    public static final String GOLDEN_FILE = "golden.json";

    private static final List<String> REQUIRED_FILES =
            List.of(MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE, SERVING_FILE, GOLDEN_FILE);
    private static final List<String> REQUIRED_FIELDS =
            List.of("labels", "precision", "max_length", "stride", "inputs", "outputs", "files");
    private static final Map<String, Double> DEFAULT_TOLERANCE = Map.of("fp32", 1e-5, "fp16", 2e-3, "int8", 2e-3);

    private final Path folder;
    private final JsonObject raw;
    private final List<String> labels;
    private final List<String> inputs;

    private Manifest(Path folder, JsonObject raw, List<String> labels, List<String> inputs) {
        this.folder = folder;
        this.raw = raw;
        this.labels = labels;
        this.inputs = inputs;
    }

    /**
     * Reads and validates {@code folder/pyner.json}: format, version (refusing newer ones) and the
     * required fields. Does not check the files' checksums (see {@link #checkFiles()}).
     *
     * @param folder the artifact folder
     * @return the manifest
     * @throws PynerException naming the folder or manifest and what is wrong
     */
    public static Manifest read(Path folder) throws PynerException {
        if (!Files.exists(folder)) {
            throw new PynerException(folder, "artifact folder not found (create one with `pyner package MODEL_DIR -o DIR`)");
        }
        if (!Files.isDirectory(folder)) {
            throw new PynerException(folder, "not a folder (an artifact is a folder holding " + MANIFEST + ")");
        }
        Path path = folder.resolve(MANIFEST);
        if (!Files.isRegularFile(path)) {
            throw new PynerException(path, "missing; this folder is not a pyner artifact (create one with `pyner package`)");
        }
        JsonObject raw = readJsonObject(path);
        JsonElement format = raw.get("format");
        if (format == null || !format.isJsonPrimitive() || !FORMAT.equals(format.getAsString())) {
            throw new PynerException(path, "not a pyner manifest (\"format\" is not \"" + FORMAT + "\")");
        }
        JsonElement version = raw.get("format_version");
        if (version == null || !version.isJsonPrimitive() || !version.getAsJsonPrimitive().isNumber()) {
            throw new PynerException(path, "format_version missing or not an integer");
        }
        int v = version.getAsInt();
        if (v > FORMAT_VERSION) {
            throw new PynerException(path, "artifact format version " + v + " is newer than this pyner-jvm supports ("
                    + FORMAT_VERSION + "); upgrade pyner-jvm, or re-package the model with a matching pyner");
        }
        for (String key : REQUIRED_FIELDS) {
            if (!raw.has(key) || raw.get(key).isJsonNull()) {
                throw new PynerException(path, "required field '" + key + "' is missing");
            }
        }
        JsonObject files = raw.getAsJsonObject("files");
        List<String> missing = new ArrayList<>();
        for (String f : REQUIRED_FILES) {
            if (!files.has(f)) {
                missing.add(f);
            }
        }
        if (!missing.isEmpty()) {
            throw new PynerException(path, "the manifest lists no checksum for " + String.join(", ", missing));
        }
        try {
            List<String> labels = strings(raw.getAsJsonArray("labels"));
            List<String> inputs = strings(raw.getAsJsonArray("inputs"));
            if (labels.isEmpty()) {
                throw new PynerException(path, "'labels' is empty");
            }
            Manifest m = new Manifest(folder, raw, labels, inputs);
            m.maxLength();
            m.stride();
            return m;
        } catch (ClassCastException | IllegalStateException | UnsupportedOperationException e) {
            throw new PynerException(path, "malformed field (" + e.getMessage() + ")", e);
        }
    }

    /**
     * Checks every file the manifest lists: present, same size, same sha256. Names the first bad file.
     *
     * @throws PynerException naming the missing, truncated or modified file
     */
    public void checkFiles() throws PynerException {
        JsonObject files = raw.getAsJsonObject("files");
        for (Map.Entry<String, JsonElement> e : files.entrySet()) {
            Path p = folder.resolve(e.getKey());
            JsonObject entry = e.getValue().getAsJsonObject();
            if (!Files.isRegularFile(p)) {
                throw new PynerException(p, "missing (listed in " + MANIFEST + ")");
            }
            long size;
            try {
                size = Files.size(p);
            } catch (IOException ex) {
                throw new PynerException(p, "cannot be read (" + ex + ")", ex);
            }
            if (entry.has("bytes") && size != entry.get("bytes").getAsLong()) {
                throw new PynerException(p, "size " + size + " bytes, manifest says " + entry.get("bytes").getAsLong()
                        + " (truncated or modified); re-package the model or restore the file");
            }
            String want = entry.has("sha256") ? entry.get("sha256").getAsString() : "";
            String got = sha256(p);
            if (!got.equals(want)) {
                throw new PynerException(p, "sha256 " + got.substring(0, 16) + "... does not match the manifest ("
                        + (want.length() > 16 ? want.substring(0, 16) : want) + "...): the file was modified;"
                        + " re-package the model or restore the file");
            }
        }
    }

    /** @return the artifact folder */
    public Path folder() {
        return folder;
    }

    /** @return the manifest file */
    public Path path() {
        return folder.resolve(MANIFEST);
    }

    /** @return a copy of the raw manifest JSON */
    public JsonObject raw() {
        return raw.deepCopy();
    }

    /** @return the labels by class id (id2label order) */
    public List<String> labels() {
        return labels;
    }

    /** @return the model's input names, as listed in the manifest */
    public List<String> inputs() {
        return inputs;
    }

    /** @return fp32, fp16 or int8 */
    public String precision() {
        return raw.get("precision").getAsString();
    }

    /** @return the model type (bert, roberta, ...), or "unknown" */
    public String modelType() {
        return stringOr(raw, "model_type", "unknown");
    }

    /** @return tokens per window, special tokens included */
    public int maxLength() {
        return raw.get("max_length").getAsInt();
    }

    /** @return the overlap between windows, tokens */
    public int stride() {
        return raw.get("stride").getAsInt();
    }

    /** @return the ONNX Runtime version the artifact was packaged with, or "unknown" */
    public String onnxRuntimeVersion() {
        return stringOr(raw, "onnxruntime_version", "unknown");
    }

    /** @return the manifest's {@code tokenizer} object (empty when absent) */
    public JsonObject tokenizer() {
        JsonElement t = raw.get("tokenizer");
        return t != null && t.isJsonObject() ? t.getAsJsonObject().deepCopy() : new JsonObject();
    }

    /** @return the per-token score tolerance for golden comparisons */
    public double scoreTolerance() {
        JsonElement g = raw.get("golden");
        if (g != null && g.isJsonObject() && g.getAsJsonObject().has("score_tolerance")) {
            return g.getAsJsonObject().get("score_tolerance").getAsDouble();
        }
        return DEFAULT_TOLERANCE.getOrDefault(precision(), 1e-5);
    }

    /** @return the file names the manifest checksums */
    public List<String> files() {
        return Collections.unmodifiableList(new ArrayList<>(raw.getAsJsonObject("files").keySet()));
    }

    /**
     * Reads a JSON object from a UTF-8 file, naming the file on failure.
     *
     * @param path the file
     * @return the object
     * @throws PynerException when missing, unreadable, or not a JSON object
     */
    public static JsonObject readJsonObject(Path path) throws PynerException {
        try {
            String text = Files.readString(path, StandardCharsets.UTF_8);
            JsonElement e = JsonParser.parseString(text);
            if (!e.isJsonObject()) {
                throw new PynerException(path, "not a JSON object");
            }
            return e.getAsJsonObject();
        } catch (NoSuchFileException ex) {
            throw new PynerException(path, "missing", ex);
        } catch (IOException ex) {
            throw new PynerException(path, "cannot be read as UTF-8 (" + ex + ")", ex);
        } catch (JsonParseException ex) {
            throw new PynerException(path, "not valid JSON (" + ex.getMessage() + ")", ex);
        }
    }

    static String sha256(Path p) throws PynerException {
        MessageDigest md;
        try {
            md = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        byte[] buf = new byte[1 << 20];
        try (InputStream in = Files.newInputStream(p)) {
            int n;
            while ((n = in.read(buf)) > 0) {
                md.update(buf, 0, n);
            }
        } catch (IOException ex) {
            throw new PynerException(p, "cannot be read (" + ex + ")", ex);
        }
        StringBuilder sb = new StringBuilder(64);
        for (byte b : md.digest()) {
            sb.append(Character.forDigit((b >> 4) & 0xF, 16)).append(Character.forDigit(b & 0xF, 16));
        }
        return sb.toString();
    }

    private static List<String> strings(JsonArray a) {
        List<String> out = new ArrayList<>(a.size());
        for (JsonElement e : a) {
            out.add(e.getAsString());
        }
        return Collections.unmodifiableList(out);
    }

    private static String stringOr(JsonObject o, String key, String dflt) {
        JsonElement e = o.get(key);
        return e == null || e.isJsonNull() ? dflt : e.getAsString();
    }

    /** @return file name to {sha256, bytes}, for reports */
    public Map<String, String> checksums() {
        Map<String, String> out = new LinkedHashMap<>();
        for (Map.Entry<String, JsonElement> e : raw.getAsJsonObject("files").entrySet()) {
            JsonElement s = e.getValue().getAsJsonObject().get("sha256");
            out.put(e.getKey(), s == null ? "" : s.getAsString());
        }
        return out;
    }
}
