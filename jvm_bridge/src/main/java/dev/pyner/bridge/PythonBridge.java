package dev.pyner.bridge;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import dev.pyner.AggregationStrategy;
import dev.pyner.Comparison;
import dev.pyner.Entity;
import dev.pyner.LabelScore;
import dev.pyner.LongText;
import dev.pyner.PynerException;
import dev.pyner.PynerModel;
import dev.pyner.ScoredText;
import dev.pyner.Task;
import dev.pyner.TextOutputs;
import dev.pyner.TokenWindow;
import dev.pyner.runtime.OnnxScorer;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;

/** Static entry points for pyjnius. Every text crosses as UTF-8 bytes; every result returns as JSON. */
public final class PythonBridge {

    private static final Gson GSON = new GsonBuilder().serializeSpecialFloatingPointValues().disableHtmlEscaping().create();

    private PythonBridge() {}

    /**
     * Loads a model.
     *
     * @param folderUtf8 the artifact folder, UTF-8
     * @param threads intra-op threads (0: ONNX Runtime's choice)
     * @param selfCheck run the golden fixtures on load
     * @return the model
     * @throws PynerException naming the file at fault
     */
    public static PynerModel load(byte[] folderUtf8, int threads, boolean selfCheck) throws PynerException {
        String folder = utf8(folderUtf8, "artifact folder");
        return PynerModel.builder().setArtifact(Paths.get(folder)).optThreads(threads).optSelfCheck(selfCheck).build();
    }

    /**
     * Predicts entities.
     *
     * @param model the model
     * @param textsJsonUtf8 a JSON array of strings, UTF-8
     * @param strategy an aggregation strategy name
     * @return a JSON array (per text) of arrays of entity objects with the Python keys
     */
    public static String predict(PynerModel model, byte[] textsJsonUtf8, String strategy) {
        AggregationStrategy s = AggregationStrategy.fromName(strategy);
        @SuppressWarnings("unchecked")
        List<String> texts = (List<String>) (List<?>) texts(textsJsonUtf8);
        List<List<Entity>> result = model.predict(texts, s);
        JsonArray out = new JsonArray();
        for (List<Entity> es : result) {
            out.add(entities(es));
        }
        return GSON.toJson(out);
    }

    /**
     * Text classification.
     *
     * @param model the model
     * @param textsJsonUtf8 a JSON array of strings, UTF-8
     * @param topK labels per text (0: all)
     * @param longText "truncate" or "average"
     * @return a JSON array (per text) of arrays of {@code {"label", "score"}}, ranked
     */
    public static String classify(PynerModel model, byte[] textsJsonUtf8, int topK, String longText) {
        LongText mode = LongText.fromName(longText);
        @SuppressWarnings("unchecked")
        List<String> texts = (List<String>) (List<?>) texts(textsJsonUtf8);
        JsonArray out = new JsonArray();
        for (List<LabelScore> ranked : model.classify(texts, topK, mode)) {
            out.add(ranked(ranked));
        }
        return GSON.toJson(out);
    }

    /**
     * Sentence embeddings.
     *
     * @param model the model
     * @param textsJsonUtf8 a JSON array of strings, UTF-8
     * @return a JSON array (per text) of float32 values (as JSON numbers)
     */
    public static String embed(PynerModel model, byte[] textsJsonUtf8) {
        @SuppressWarnings("unchecked")
        List<String> texts = (List<String>) (List<?>) texts(textsJsonUtf8);
        JsonArray out = new JsonArray();
        for (float[] v : model.embed(texts)) {
            out.add(floats(v));
        }
        return GSON.toJson(out);
    }

    /**
     * The artifact's task and what describes it.
     *
     * @param model the model
     * @return JSON {task, labels, embedding_dim, function_to_apply}
     */
    public static String task(PynerModel model) {
        JsonObject o = new JsonObject();
        o.addProperty("task", model.task().wireName());
        JsonArray labels = new JsonArray();
        model.labels().forEach(labels::add);
        o.add("labels", labels);
        o.addProperty("embedding_dim", model.embeddingDim());
        o.addProperty("function_to_apply", model.task() == Task.TEXT_CLASSIFICATION ? model.manifest().functionToApply() : null);
        return GSON.toJson(o);
    }

    /**
     * Everything parity reports compare, in the golden schema of the artifact's task (docs/tasks.md;
     * what {@code pyner.check.golden_cases} computes in Python). Token classification: per text its
     * windows (ids, type ids, offsets, special mask, per-token labels and float32 scores) and its
     * entities for every strategy. Text classification: every window (tokens, logits, scores) from one
     * run over all windows, and {@code classification} = the full ranked labels per long_text mode.
     * Feature extraction: the first window's tokens and the {@code embedding}.
     *
     * @param model the model
     * @param textsJsonUtf8 a JSON array of strings, UTF-8
     * @return a JSON array, one object per text
     */
    public static String analyze(PynerModel model, byte[] textsJsonUtf8) {
        List<Object> texts = texts(textsJsonUtf8);
        if (model.task() == Task.TEXT_CLASSIFICATION) {
            return analyzeClassification(model, texts);
        }
        if (model.task() == Task.FEATURE_EXTRACTION) {
            return analyzeEmbeddings(model, texts);
        }
        List<ScoredText> scored = model.score(texts);
        JsonArray out = new JsonArray();
        for (ScoredText st : scored) {
            JsonObject o = new JsonObject();
            JsonArray windows = new JsonArray();
            for (int w = 0; w < st.windows().size(); w++) {
                JsonObject jw = windowTokens(st.windows().get(w));
                JsonArray labels = new JsonArray();
                for (int v : st.labels(w)) {
                    labels.add(v);
                }
                jw.add("labels", labels);
                JsonArray scores = new JsonArray();
                for (float[] row : st.scores().get(w)) {
                    JsonArray r = new JsonArray();
                    for (float f : row) {
                        r.add((double) f);
                    }
                    scores.add(r);
                }
                jw.add("scores", scores);
                windows.add(jw);
            }
            o.add("windows", windows);
            JsonObject ents = new JsonObject();
            for (AggregationStrategy s : AggregationStrategy.values()) {
                ents.add(s.wireName(), entities(model.decode(st, s, null)));
            }
            o.add("entities", ents);
            out.add(o);
        }
        return GSON.toJson(out);
    }

    private static String analyzeClassification(PynerModel model, List<Object> texts) {
        List<TextOutputs> all = model.outputs(texts, false, List.of(OnnxScorer.LOGITS, OnnxScorer.SCORES));
        @SuppressWarnings("unchecked")
        List<String> plain = (List<String>) (List<?>) texts;
        List<List<List<LabelScore>>> ranked = new ArrayList<>();
        for (LongText mode : LongText.values()) {
            ranked.add(model.classify(plain, 0, mode));
        }
        JsonArray out = new JsonArray();
        for (int i = 0; i < all.size(); i++) {
            TextOutputs t = all.get(i);
            JsonArray windows = new JsonArray();
            for (int w = 0; w < t.windows().size(); w++) {
                JsonObject jw = windowTokens(t.windows().get(w));
                jw.add("logits", floats(t.output(w, OnnxScorer.LOGITS)));
                jw.add("scores", floats(t.output(w, OnnxScorer.SCORES)));
                windows.add(jw);
            }
            JsonObject classification = new JsonObject();
            for (LongText mode : LongText.values()) {
                classification.add(mode.wireName(), ranked(ranked.get(mode.ordinal()).get(i)));
            }
            JsonObject o = new JsonObject();
            o.add("windows", windows);
            o.add("classification", classification);
            out.add(o);
        }
        return GSON.toJson(out);
    }

    private static String analyzeEmbeddings(PynerModel model, List<Object> texts) {
        List<TextOutputs> first = model.outputs(texts, true, List.of(OnnxScorer.EMBEDDINGS));
        @SuppressWarnings("unchecked")
        List<float[]> vectors = model.embed((List<String>) (List<?>) texts);
        JsonArray out = new JsonArray();
        for (int i = 0; i < first.size(); i++) {
            JsonArray windows = new JsonArray();
            windows.add(windowTokens(first.get(i).windows().get(0)));
            JsonObject o = new JsonObject();
            o.add("windows", windows);
            o.add("embedding", floats(vectors.get(i)));
            out.add(o);
        }
        return GSON.toJson(out);
    }

    /** A window's tokens in the golden schema: input_ids, type_ids, offsets (code points), special_tokens_mask. */
    private static JsonObject windowTokens(TokenWindow win) {
        JsonObject jw = new JsonObject();
        jw.add("input_ids", longs(win.inputIds()));
        jw.add("type_ids", longs(win.typeIds()));
        JsonArray offsets = new JsonArray();
        for (int t = 0; t < win.length(); t++) {
            JsonArray p = new JsonArray();
            p.add(win.starts()[t]);
            p.add(win.ends()[t]);
            offsets.add(p);
        }
        jw.add("offsets", offsets);
        JsonArray special = new JsonArray();
        for (int v : win.specialTokensMask()) {
            special.add(v);
        }
        jw.add("special_tokens_mask", special);
        return jw;
    }

    /** Ranked labels as the pipeline's {@code [{"label", "score"}, ...]} (float32 scores as JSON doubles). */
    private static JsonArray ranked(List<LabelScore> ranked) {
        JsonArray a = new JsonArray();
        for (LabelScore l : ranked) {
            JsonObject o = new JsonObject();
            o.addProperty("label", l.label());
            o.addProperty("score", (double) l.score());
            a.add(o);
        }
        return a;
    }

    /** float32 values as JSON doubles (exact: every float is a double). */
    private static JsonArray floats(float[] v) {
        JsonArray a = new JsonArray();
        for (float f : v) {
            a.add((double) f);
        }
        return a;
    }

    /**
     * Versions of what runs on the JVM side.
     *
     * @param model the model
     * @return JSON {onnxruntime, java, pyner_jvm}
     */
    public static String versions(PynerModel model) {
        JsonObject o = new JsonObject();
        o.addProperty("onnxruntime", model.onnxRuntimeVersion());
        o.addProperty("java", System.getProperty("java.version"));
        o.addProperty("pyner_jvm", PynerModel.version());
        return o.toString();
    }

    /** Entities in the pipeline's JSON form, plus the UTF-16 offsets. */
    private static JsonArray entities(List<Entity> es) {
        JsonArray a = Comparison.toJson(es);
        for (int i = 0; i < es.size(); i++) {
            a.get(i).getAsJsonObject().addProperty("start_utf16", es.get(i).startUtf16());
            a.get(i).getAsJsonObject().addProperty("end_utf16", es.get(i).endUtf16());
        }
        return a;
    }

    private static JsonArray longs(long[] v) {
        JsonArray a = new JsonArray();
        for (long x : v) {
            a.add(x);
        }
        return a;
    }

    /** Texts from a UTF-8 JSON array; null or non-string elements are passed on for PynerModel to name. */
    static List<Object> texts(byte[] json) {
        String s = utf8(json, "texts");
        JsonElement e;
        try {
            e = JsonParser.parseString(s);
        } catch (JsonParseException ex) {
            throw new IllegalArgumentException("texts are not a JSON array: " + ex.getMessage(), ex);
        }
        if (!e.isJsonArray()) {
            throw new IllegalArgumentException("texts must be a JSON array of strings");
        }
        List<Object> out = new ArrayList<>();
        for (JsonElement t : e.getAsJsonArray()) {
            if (t.isJsonNull()) {
                out.add(null);
            } else if (t.isJsonPrimitive() && t.getAsJsonPrimitive().isString()) {
                out.add(t.getAsString());
            } else {
                out.add(t); // PynerModel names its index and type
            }
        }
        return out;
    }

    private static String utf8(byte[] b, String what) {
        if (b == null) {
            throw new IllegalArgumentException(what + " is null");
        }
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(b))
                    .toString();
        } catch (CharacterCodingException ex) {
            throw new IllegalArgumentException(what + " are not valid UTF-8: " + ex.getMessage(), ex);
        }
    }
}
