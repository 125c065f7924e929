package dev.pyner;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import dev.pyner.artifact.Manifest;
import dev.pyner.decode.ClassScores;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The task seam without a model (docs/tasks.md): task names and the wrong-task message, the
 * manifest's task fields and format versions, and text classification's arithmetic (the average of
 * several windows, bit for bit as pyner.tasks.average_scores; the pipeline's ranking).
 */
class TaskTest {

    @Test
    void taskNamesAndTheWrongTaskMessage() {
        assertEquals(Task.TOKEN_CLASSIFICATION, Task.fromName(null));
        assertEquals(Task.TEXT_CLASSIFICATION, Task.fromName("text-classification"));
        assertEquals(Task.FEATURE_EXTRACTION, Task.fromName("feature-extraction"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Task.fromName("summarization"));
        assertTrue(e.getMessage().contains("token-classification, text-classification, feature-extraction"), e.getMessage());
        PynerUsageException u = assertThrows(PynerUsageException.class,
                () -> Task.TEXT_CLASSIFICATION.require(Task.TOKEN_CLASSIFICATION, "art/x", "predict"));
        // Python's pyner.tasks.require, word for word.
        assertEquals("art/x: the artifact is a text-classification model: predict() gives entities of a token-classification"
                + " model; use classify() for its labels", u.getMessage());
        assertEquals(Task.TEXT_CLASSIFICATION, u.task());
        assertEquals(Task.TOKEN_CLASSIFICATION, u.wanted());
        Task.FEATURE_EXTRACTION.require(Task.FEATURE_EXTRACTION, "art/x", "embed");
        assertEquals(List.of("logits", "scores"), Task.TEXT_CLASSIFICATION.outputs());
        assertEquals(LongText.AVERAGE, LongText.fromName("Average"));
        assertThrows(IllegalArgumentException.class, () -> LongText.fromName("mean"));
    }

    @Test
    void averageIsFloat64SumsThenFloat32MeansThenTheFunction() {
        float[] a = {1.5f, -0.25f, 3.0f};
        float[] b = {0.5f, 0.75f, -1.0f};
        float[] c = {2.0f, 0.1f, 0.3f};
        List<float[]> w = List.of(a, b, c);
        double[] means = new double[3];
        for (int j = 0; j < 3; j++) {
            means[j] = (float) (((double) a[j] + (double) b[j] + (double) c[j]) / 3);
        }
        float[] none = ClassScores.average(w, "none");
        for (int j = 0; j < 3; j++) {
            assertEquals((float) means[j], none[j]);
        }
        double top = Math.max(means[0], Math.max(means[1], means[2]));
        double[] e = new double[3];
        double s = 0;
        for (int j = 0; j < 3; j++) {
            e[j] = StrictMath.exp(means[j] - top);
        }
        for (double x : e) {
            s += x;
        }
        float[] soft = ClassScores.average(w, "softmax");
        for (int j = 0; j < 3; j++) {
            assertEquals((float) (e[j] / s), soft[j]);
        }
        float[] sig = ClassScores.average(w, "sigmoid");
        for (int j = 0; j < 3; j++) {
            assertEquals((float) (1.0 / (1.0 + StrictMath.exp(-means[j]))), sig[j]);
        }
        // One window averaged is its own logits through the function (the runtime uses the graph's scores instead).
        assertArrayEquals(a, ClassScores.average(List.of(a), "none"));
        // Huge logits: softmax stays finite, sigmoid saturates (Python's _exp gives inf as StrictMath.exp).
        float[] big = ClassScores.average(List.of(new float[] {1000f, -1000f}), "sigmoid");
        assertArrayEquals(new float[] {1.0f, 0.0f}, big);
        assertArrayEquals(new float[] {1.0f, 0.0f}, ClassScores.average(List.of(new float[] {1000f, -1000f}), "softmax"));
        assertThrows(IllegalArgumentException.class, () -> ClassScores.average(w, "tanh"));
    }

    @Test
    void rankingIsByScoreThenClassIdAndCutToTopK() {
        List<String> labels = List.of("a", "b", "c", "d");
        float[] scores = {0.25f, 0.5f, 0.25f, 0.0f};
        List<LabelScore> all = ClassScores.rank(scores, labels, 0);
        assertEquals(List.of(new LabelScore("b", 0.5f), new LabelScore("a", 0.25f), new LabelScore("c", 0.25f),
                new LabelScore("d", 0.0f)), all);
        assertEquals(all.subList(0, 1), ClassScores.rank(scores, labels, 1));
        assertEquals(all.subList(0, 3), ClassScores.rank(scores, labels, 3));
        assertEquals(all, ClassScores.rank(scores, labels, 10));
        // -0.0 and 0.0 tie (Python compares the negated floats with <): class order decides.
        assertEquals(List.of("x", "y"), ClassScores.rank(new float[] {-0.0f, 0.0f}, List.of("x", "y"), 0).stream()
                .map(LabelScore::label).toList());
        assertThrows(IllegalArgumentException.class, () -> ClassScores.rank(scores, labels, -1));
    }

    @Test
    void manifestTaskFieldsAndVersions(@TempDir Path tmp) throws Exception {
        Path cls = manifest(tmp.resolve("cls"), 2, "text-classification", m -> {
            m.addProperty("function_to_apply", "sigmoid");
            m.addProperty("problem_type", "multi_label_classification");
        });
        Manifest c = Manifest.read(cls);
        assertEquals(Task.TEXT_CLASSIFICATION, c.task());
        assertEquals("sigmoid", c.functionToApply());
        assertEquals("multi_label_classification", c.problemType());
        assertEquals(2, c.formatVersion());

        Path emb = manifest(tmp.resolve("emb"), 2, "feature-extraction", m -> {
            m.add("labels", new JsonArray());
            JsonObject pooling = new JsonObject();
            pooling.addProperty("mode", "mean");
            pooling.addProperty("normalize", true);
            m.add("pooling", pooling);
            m.addProperty("embedding_dim", 384);
        });
        Manifest e = Manifest.read(emb);
        assertEquals(Task.FEATURE_EXTRACTION, e.task());
        assertEquals("mean", e.poolingMode());
        assertTrue(e.poolingNormalize());
        assertEquals(384, e.embeddingDim());
        assertEquals(List.of(), e.labels());

        // No "task": token classification, in format 1 and 2.
        assertEquals(Task.TOKEN_CLASSIFICATION, Manifest.read(manifest(tmp.resolve("ner1"), 1, null, m -> { })).task());
        assertEquals(Task.TOKEN_CLASSIFICATION, Manifest.read(manifest(tmp.resolve("ner2"), 2, null, m -> { })).task());

        PynerException newer = assertThrows(PynerException.class,
                () -> Manifest.read(manifest(tmp.resolve("v3"), 3, "text-classification", m -> { })));
        assertTrue(newer.getMessage().contains("version 3 is newer") && newer.getMessage().contains("(2)"), newer.getMessage());
        PynerException old = assertThrows(PynerException.class,
                () -> Manifest.read(manifest(tmp.resolve("v1"), 1, "text-classification", m -> { })));
        assertTrue(old.getMessage().contains("text-classification artifact must have format_version 2, not 1"), old.getMessage());
        PynerException unknown = assertThrows(PynerException.class,
                () -> Manifest.read(manifest(tmp.resolve("qa"), 2, "question-answering", m -> { })));
        assertTrue(unknown.getMessage().contains("'question-answering' is not one this pyner-jvm runs"), unknown.getMessage());
        PynerException fn = assertThrows(PynerException.class, () -> Manifest.read(manifest(tmp.resolve("fn"), 2,
                "text-classification", m -> m.addProperty("function_to_apply", "tanh"))));
        assertTrue(fn.getMessage().contains("function_to_apply 'tanh'"), fn.getMessage());
    }

    /** A manifest only (the checksums are not read by Manifest.read). */
    static Path manifest(Path folder, int version, String task, java.util.function.Consumer<JsonObject> edit) throws Exception {
        Files.createDirectories(folder);
        JsonObject m = new JsonObject();
        m.addProperty("format", "pyner-artifact");
        m.addProperty("format_version", version);
        if (task != null) {
            m.addProperty("task", task);
        }
        JsonArray labels = new JsonArray();
        labels.add("NEGATIVE");
        labels.add("POSITIVE");
        m.add("labels", labels);
        m.addProperty("precision", "fp32");
        m.addProperty("max_length", 32);
        m.addProperty("stride", 8);
        JsonArray inputs = new JsonArray();
        inputs.add("input_ids");
        inputs.add("attention_mask");
        m.add("inputs", inputs);
        m.add("outputs", new JsonArray());
        JsonObject files = new JsonObject();
        for (String f : List.of("model.onnx", "tokenizer.json", "config.json", "serving.properties", "golden.json")) {
            files.add(f, new JsonObject());
        }
        m.add("files", files);
        edit.accept(m);
        Files.writeString(folder.resolve("pyner.json"), m.toString(), StandardCharsets.UTF_8);
        return folder;
    }
}
