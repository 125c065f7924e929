package dev.pyner.artifact;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import dev.pyner.PynerException;
import dev.pyner.Task;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
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
    /**
     * The newest artifact format this library reads: 2 (text-classification and feature-extraction
     * artifacts; token-classification ones stay version 1, see docs/tasks.md).
     */
    public static final int FORMAT_VERSION = 2;
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

    /** The prefix of an artifact digest. */
    public static final String DIGEST_PREFIX = "sha256:";
    /** The read buffer of the checksums: big reads keep multi-GB files at the hash's speed. */
    static final int HASH_BUFFER_BYTES = 8 << 20;

    private final Path folder;
    private final JsonObject raw;
    private final List<String> labels;
    private final List<String> inputs;
    private final String digest;
    private final Task task;

    private Manifest(Path folder, JsonObject raw, List<String> labels, List<String> inputs, String digest, Task task) {
        this.folder = folder;
        this.raw = raw;
        this.labels = labels;
        this.inputs = inputs;
        this.digest = digest;
        this.task = task;
    }

    /**
     * The format version an artifact of {@code task} is written with (Python's {@code
     * format_version_for}): 1 for token classification, 2 for the other tasks.
     *
     * @param task the task
     * @return the version
     */
    public static int formatVersionFor(Task task) {
        return task == Task.TOKEN_CLASSIFICATION ? 1 : 2;
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
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(path);
        } catch (IOException ex) {
            throw new PynerException(path, "cannot be read (" + ex + ")", ex);
        }
        JsonObject raw = parseJsonObject(path, bytes);
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
        Task task;
        JsonElement taskField = raw.get("task");
        try {
            task = Task.fromName(taskField == null || taskField.isJsonNull() ? null
                    : taskField.isJsonPrimitive() ? taskField.getAsString() : taskField.toString());
        } catch (IllegalArgumentException e) {
            throw new PynerException(path, e.getMessage() + "; upgrade pyner-jvm, or re-package the model with this version");
        }
        if (v < formatVersionFor(task)) {
            throw new PynerException(path, "a " + task + " artifact must have format_version " + formatVersionFor(task)
                    + ", not " + v);
        }
        if (!raw.get("files").isJsonObject()) {
            throw new PynerException(path, "\"files\" is not an object of file name -> checksum");
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
        for (String name : files.keySet()) {
            confined(folder, name, path);
        }
        JsonElement external = raw.get("external_data");
        if (external != null && !external.isJsonNull()) {
            String name = external.isJsonPrimitive() ? external.getAsString() : external.toString();
            confined(folder, name, path);
            if (!files.has(name)) {
                throw new PynerException(path, "external_data names " + name + " but the manifest lists no checksum for it;"
                        + " re-package the model");
            }
        }
        try {
            List<String> labels = strings(raw.getAsJsonArray("labels"));
            List<String> inputs = strings(raw.getAsJsonArray("inputs"));
            if (labels.isEmpty() && task != Task.FEATURE_EXTRACTION) {
                throw new PynerException(path, "'labels' is empty");
            }
            Manifest m = new Manifest(folder, raw, labels, inputs, DIGEST_PREFIX + hex(sha256().digest(bytes)), task);
            m.maxLength();
            m.stride();
            if (task == Task.TEXT_CLASSIFICATION) {
                String f = m.functionToApply();
                if (!f.equals("softmax") && !f.equals("sigmoid") && !f.equals("none")) {
                    throw new PynerException(path, "function_to_apply '" + f + "' is not softmax, sigmoid or none");
                }
            }
            if (task == Task.FEATURE_EXTRACTION) {
                m.poolingMode();
                m.poolingNormalize();
                m.embeddingDim();
            }
            return m;
        } catch (ClassCastException | IllegalStateException | UnsupportedOperationException | NumberFormatException e) {
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
            Path p = confined(folder, e.getKey(), path());
            if (!e.getValue().isJsonObject()) {
                throw new PynerException(path(), "the entry of '" + e.getKey() + "' is not an object with sha256 and bytes");
            }
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

    /**
     * The artifact's digest: "sha256:" + the hex sha256 of the exact bytes of {@code pyner.json}, as
     * {@code pyner.artifact.artifact_digest} computes it. The manifest holds every file's sha256, so
     * this one value pins the whole folder (through {@link #checkFiles()}). It detects any change,
     * but proves nothing about who made the artifact.
     *
     * @return the digest
     */
    public String digest() {
        return digest;
    }

    /**
     * Refuses this artifact unless its digest is {@code expected}.
     *
     * @param expected "sha256:" and 64 hex digits (any case)
     * @throws PynerException naming both digests when they differ
     * @throws IllegalArgumentException when {@code expected} is not a digest
     */
    public void checkDigest(String expected) throws PynerException {
        String want = parseDigest(expected);
        if (!digest.equals(want)) {
            throw new PynerException(folder, "artifact digest " + digest + " is not the expected " + want
                    + ": a different or modified artifact");
        }
    }

    /**
     * Validates an expected digest.
     *
     * @param value "sha256:" and 64 hex digits (any case, surrounding blanks ignored)
     * @return the digest, lower-cased
     * @throws IllegalArgumentException naming the value when it is not a digest
     */
    public static String parseDigest(String value) {
        String v = value == null ? "" : value.strip().toLowerCase(java.util.Locale.ROOT);
        if (!v.matches("sha256:[0-9a-f]{64}")) {
            throw new IllegalArgumentException("'" + value + "' is not an artifact digest (\"sha256:\" followed by 64 hex digits)");
        }
        return v;
    }

    /**
     * {@code folder/name} for a manifest file name, refusing what is not a plain file name inside the
     * folder (absolute paths, "..", separators) and symlinks that resolve outside it.
     */
    private static Path confined(Path folder, String name, Path manifest) throws PynerException {
        if (name.isEmpty() || name.equals(".") || name.equals("..") || name.contains("/") || name.contains("\\")
                || name.indexOf('\0') >= 0 || Paths.get(name).isAbsolute()) {
            throw new PynerException(manifest, "file name '" + name + "' is not a plain file name inside the artifact folder;"
                    + " the manifest was modified: re-package the model, or restore the original artifact");
        }
        Path p = folder.resolve(name);
        if (Files.isSymbolicLink(p)) {
            try {
                Path real = p.toRealPath();
                if (!real.startsWith(folder.toRealPath())) {
                    throw new PynerException(p, "a symlink to " + real + ", outside the artifact folder; copy the file into"
                            + " the folder (artifacts are self-contained)");
                }
            } catch (IOException ex) {
                throw new PynerException(p, "a symlink that cannot be resolved (" + ex + ")", ex);
            }
        }
        return p;
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

    /** @return the artifact's task ({@code "task"}; a manifest without one is token classification) */
    public Task task() {
        return task;
    }

    /** @return the manifest's format_version */
    public int formatVersion() {
        return raw.get("format_version").getAsInt();
    }

    /**
     * Text classification: the function the graph's {@code scores} apply to the logits, and the one
     * {@code long_text="average"} applies to the mean logits.
     *
     * @return softmax, sigmoid or none ("none" when the manifest has none)
     */
    public String functionToApply() {
        return stringOr(raw, "function_to_apply", "none");
    }

    /** @return text classification's problem_type (single_label_classification, multi_label_classification, regression), or null */
    public String problemType() {
        return stringOr(raw, "problem_type", null);
    }

    /** @return feature extraction's pooling mode (mean, cls, max, mean_sqrt_len), or null for the other tasks */
    public String poolingMode() {
        JsonObject p = pooling();
        return p == null ? null : stringOr(p, "mode", null);
    }

    /** @return whether feature extraction's embeddings are L2-normalized (false when not said) */
    public boolean poolingNormalize() {
        JsonObject p = pooling();
        return p != null && p.has("normalize") && !p.get("normalize").isJsonNull() && p.get("normalize").getAsBoolean();
    }

    /** @return feature extraction's embedding dimension, or 0 when the manifest does not say */
    public int embeddingDim() {
        JsonElement e = raw.get("embedding_dim");
        return e == null || e.isJsonNull() ? 0 : e.getAsInt();
    }

    private JsonObject pooling() {
        JsonElement p = raw.get("pooling");
        return p != null && p.isJsonObject() ? p.getAsJsonObject() : null;
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
            return parseJsonObject(path, Files.readAllBytes(path));
        } catch (NoSuchFileException ex) {
            throw new PynerException(path, "missing", ex);
        } catch (IOException ex) {
            throw new PynerException(path, "cannot be read (" + ex + ")", ex);
        }
    }

    private static JsonObject parseJsonObject(Path path, byte[] bytes) throws PynerException {
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException ex) {
            throw new PynerException(path, "cannot be read as UTF-8 (" + ex + ")", ex);
        }
        try {
            JsonElement e = JsonParser.parseString(text);
            if (!e.isJsonObject()) {
                throw new PynerException(path, "not a JSON object");
            }
            return e.getAsJsonObject();
        } catch (JsonParseException ex) {
            throw new PynerException(path, "not valid JSON (" + ex.getMessage() + ")", ex);
        }
    }

    /** Hex sha256 of a file: FileChannel reads of {@value #HASH_BUFFER_BYTES} bytes into a direct buffer. */
    static String sha256(Path p) throws PynerException {
        MessageDigest md = sha256();
        ByteBuffer buf = ByteBuffer.allocateDirect(HASH_BUFFER_BYTES);
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
            while (ch.read(buf) >= 0) {
                buf.flip();
                md.update(buf);
                buf.clear();
            }
        } catch (IOException ex) {
            throw new PynerException(p, "cannot be read (" + ex + ")", ex);
        }
        return hex(md.digest());
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static String hex(byte[] bytes) {
        StringBuilder sb = new StringBuilder(2 * bytes.length);
        for (byte b : bytes) {
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
}
