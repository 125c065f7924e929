package dev.pyner;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonArray;
import dev.pyner.artifact.Golden;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The text-classification and feature-extraction test artifacts (docs/tasks.md): the golden
 * self-check passes bit for bit, classify and embed give the golden results, top_k and long_text
 * behave as the pipeline's, and another task's method is refused naming the artifact's task.
 */
class TaskGoldenTest {

    static Stream<Path> classification() {
        return TestArtifacts.classification().stream();
    }

    static Stream<Path> embedding() {
        return TestArtifacts.embedding().stream();
    }

    static PynerModel load(Path artifact) throws PynerException {
        return PynerModel.builder().setArtifact(artifact).optSelfCheck(false).optThreads(1).build();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("classification")
    void classificationReproducesGoldenFixturesBitForBit(Path artifact) throws Exception {
        try (PynerModel model = load(artifact)) {
            assertEquals(Task.TEXT_CLASSIFICATION, model.task());
            Comparison r = model.selfCheck();
            String name = artifact.getFileName().toString();
            assertTrue(r.ok(), name + ": " + r.summary() + "\n  " + String.join("\n  ", r.differences()));
            assertTrue(r.cases() >= 30 && r.tokens() > 0, r.summary());
            assertEquals(2 * r.cases(), r.rankings(), r.summary());
            // Same ONNX Runtime as the packaging Python and the same batches: every value bit-identical.
            assertEquals(model.manifest().onnxRuntimeVersion(), model.onnxRuntimeVersion());
            assertEquals(0.0, r.maxScoreDiff(), name + ": " + r.summary());
            assertEquals(r.values(), r.identicalValues(), name + ": " + r.summary());
            System.out.println(name + ": " + r.summary());
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("classification")
    void classifyGivesTheGoldenRankingsWithTopKAndLongText(Path artifact) throws Exception {
        Golden golden = Golden.read(artifact);
        List<String> texts = golden.texts();
        try (PynerModel model = load(artifact)) {
            List<String> labels = model.labels();
            double tolerance = model.manifest().scoreTolerance();
            List<List<LabelScore>> truncate = model.classify(texts, 0, LongText.TRUNCATE);
            List<List<LabelScore>> average = model.classify(texts, 0, LongText.AVERAGE);
            List<List<LabelScore>> top1 = model.classify(texts);
            List<List<LabelScore>> top2 = model.classify(texts, 2);
            int multiWindow = 0;
            int differ = 0;
            for (int i = 0; i < texts.size(); i++) {
                Golden.Case c = golden.cases().get(i);
                assertEquals(json(c.classification("truncate")), truncate.get(i), c.id());
                assertEquals(json(c.classification("average")), average.get(i), c.id());
                assertEquals(labels.size(), truncate.get(i).size());
                assertEquals(truncate.get(i).subList(0, 1), top1.get(i), c.id());
                assertEquals(truncate.get(i).subList(0, Math.min(2, labels.size())), top2.get(i), c.id());
                if (c.windows().size() > 1) {
                    multiWindow++;
                    differ += truncate.get(i).equals(average.get(i)) ? 0 : 1;
                } else if (!"int8".equals(model.manifest().precision())) {
                    // One window: average is the graph's scores, as truncate; run in other batches, so equal within
                    // the tolerance. Not for int8: its dynamic quantization scales activations per batch, and the
                    // two modes' batches differ (measured up to 5e-3 on bert-cls-int8).
                    Comparison same = new Comparison(tolerance);
                    same.ranked(c.id(), average.get(i), jsonOf(truncate.get(i)));
                    assertTrue(same.ok(), c.id() + ": one window: average = truncate: " + same.differences());
                }
                // Ranked: scores never increase.
                for (int k = 1; k < labels.size(); k++) {
                    assertTrue(truncate.get(i).get(k - 1).score() >= truncate.get(i).get(k).score());
                }
            }
            assertTrue(multiWindow > 0, "no golden text has several windows at max_length " + model.manifest().maxLength());
            assertTrue(differ > 0, "long_text=average gave the truncate result on every multi-window text");
            // Batch independence: one text alone gives what it gives among all.
            int longest = golden.ids().indexOf("long-01");
            Comparison alone = new Comparison(tolerance);
            alone.ranked("long-01", model.classify(List.of(texts.get(longest)), 0, LongText.AVERAGE).get(0),
                    jsonOf(average.get(longest)));
            assertTrue(alone.ok(), String.join("; ", alone.differences()));
            assertEquals(List.of(), model.classify(List.of()));
            // The function the manifest names: softmax sums to 1, sigmoid does not have to.
            float[] s = model.classScores(List.of(texts.get(0)), LongText.TRUNCATE).get(0);
            double sum = 0;
            for (float v : s) {
                sum += v;
            }
            if (model.manifest().functionToApply().equals("softmax")) {
                assertEquals(1.0, sum, 1e-5);
            } else {
                assertEquals("sigmoid", model.manifest().functionToApply());
                assertEquals("multi_label_classification", model.manifest().problemType());
            }
            IllegalArgumentException neg = assertThrows(IllegalArgumentException.class, () -> model.classify(texts, -1));
            assertTrue(neg.getMessage().contains("topK -1"), neg.getMessage());
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("embedding")
    void embeddingsReproduceGoldenFixturesBitForBit(Path artifact) throws Exception {
        Golden golden = Golden.read(artifact);
        try (PynerModel model = load(artifact)) {
            assertEquals(Task.FEATURE_EXTRACTION, model.task());
            String name = artifact.getFileName().toString();
            Comparison r = model.selfCheck();
            assertTrue(r.ok(), name + ": " + r.summary() + "\n  " + String.join("\n  ", r.differences()));
            assertEquals(r.cases(), r.embeddings(), r.summary());
            assertEquals(0.0, r.maxScoreDiff(), name + ": " + r.summary());
            assertEquals(r.values(), r.identicalValues(), name + ": " + r.summary());
            System.out.println(name + ": " + r.summary());
            List<float[]> vectors = model.embed(golden.texts());
            int dim = model.embeddingDim();
            assertTrue(dim > 0);
            for (int i = 0; i < vectors.size(); i++) {
                float[] v = vectors.get(i);
                assertEquals(dim, v.length);
                assertArrayEquals(floats(golden.cases().get(i).embedding()), v, golden.ids().get(i));
                if (model.manifest().poolingNormalize()) {
                    double n = 0;
                    for (float x : v) {
                        n += (double) x * x;
                    }
                    assertEquals(1.0, Math.sqrt(n), 1e-5, golden.ids().get(i));
                }
            }
            // Order independence: the texts reversed give the same vectors, reversed, within the tolerance (other
            // batches: the real MiniLM's GEMMs round 1 ulp differently in another batch composition).
            List<String> reversed = new ArrayList<>(golden.texts());
            Collections.reverse(reversed);
            List<float[]> rev = model.embed(reversed);
            for (int i = 0; i < vectors.size(); i++) {
                assertArrayEquals(vectors.get(i), rev.get(vectors.size() - 1 - i), (float) model.manifest().scoreTolerance());
            }
            assertEquals(List.of(), model.embed(List.of()));
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("embedding")
    void similarTextsAreCloserThanUnrelatedOnesWithTheRealMiniLm(Path artifact) throws Exception {
        if (!artifact.getFileName().toString().startsWith("minilm")) {
            return; // tiny random encoders embed no meaning
        }
        try (PynerModel model = load(artifact)) {
            List<float[]> v = model.embed(List.of("The cat sits on the mat.", "A cat is sitting on a mat.",
                    "Stock markets fell sharply in Tokyo."));
            assertTrue(cosine(v.get(0), v.get(1)) > cosine(v.get(0), v.get(2)) + 0.2,
                    "paraphrase " + cosine(v.get(0), v.get(1)) + " vs unrelated " + cosine(v.get(0), v.get(2)));
            assertEquals(384, v.get(0).length);
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("wrongTaskCases")
    void anotherTasksMethodIsRefusedNamingTheArtifactsTask(Path artifact) throws Exception {
        try (PynerModel model = load(artifact)) {
            Task task = model.task();
            List<String> texts = List.of("Angela Merkel visited Paris.");
            List<Runnable> calls = new ArrayList<>();
            if (task != Task.TOKEN_CLASSIFICATION) {
                calls.add(() -> model.predict(texts));
                calls.add(() -> model.score(texts));
            }
            if (task != Task.TEXT_CLASSIFICATION) {
                calls.add(() -> model.classify(texts));
            }
            if (task != Task.FEATURE_EXTRACTION) {
                calls.add(() -> model.embed(texts));
            }
            for (Runnable call : calls) {
                PynerUsageException e = assertThrows(PynerUsageException.class, call::run);
                assertEquals(task, e.task());
                assertTrue(e.getMessage().contains("the artifact is a " + task.wireName() + " model")
                        && e.getMessage().contains("use " + task.method() + "()"), e.getMessage());
                assertTrue(e.getMessage().contains(artifact.getFileName().toString()), e.getMessage());
            }
            assertEquals(3 - 1 + (task == Task.TOKEN_CLASSIFICATION ? 0 : 1), calls.size());
        }
    }

    @org.junit.jupiter.api.Test
    void concurrentClassifyAndEmbedEqualSequentialCalls() throws Exception {
        Path clsArt = TestArtifacts.get("bert-cls-fp32");
        Path embArt = TestArtifacts.get("bert-emb-fp32");
        List<String> texts = Golden.read(clsArt).texts();
        try (PynerModel cls = load(clsArt); PynerModel emb = load(embArt)) {
            List<List<LabelScore>> wantCls = cls.classify(texts, 0, LongText.AVERAGE);
            List<float[]> wantEmb = emb.embed(texts);
            var pool = java.util.concurrent.Executors.newFixedThreadPool(4);
            try {
                List<java.util.concurrent.Future<List<List<LabelScore>>>> c = new ArrayList<>();
                List<java.util.concurrent.Future<List<float[]>>> e = new ArrayList<>();
                for (int i = 0; i < 4; i++) {
                    c.add(pool.submit(() -> cls.classify(texts, 0, LongText.AVERAGE)));
                    e.add(pool.submit(() -> emb.embed(texts)));
                }
                for (var f : c) {
                    assertEquals(wantCls, f.get());
                }
                for (var f : e) {
                    List<float[]> got = f.get();
                    for (int i = 0; i < got.size(); i++) {
                        assertArrayEquals(wantEmb.get(i), got.get(i));
                    }
                }
            } finally {
                pool.shutdown();
            }
        }
    }

    @org.junit.jupiter.api.Test
    void thePynerDjlTranslatorRefusesANonNerArtifactNamingItsTask() {
        Path art = TestArtifacts.get("bert-cls-fp32");
        ai.djl.repository.zoo.Criteria<String, Entity[]> criteria = ai.djl.repository.zoo.Criteria.builder()
                .setTypes(String.class, Entity[].class)
                .optModelPath(art)
                .optEngine("OnnxRuntime")
                .optTranslatorFactory(new dev.pyner.djl.PynerTranslatorFactory())
                .build();
        Exception e = assertThrows(Exception.class, () -> {
            try (var model = criteria.loadModel(); var predictor = model.newPredictor()) {
                predictor.predict("Paris");
            }
        });
        Throwable t = e;
        while (t != null && !(t instanceof PynerUsageException)) {
            t = t.getCause();
        }
        assertTrue(t != null, "not a PynerUsageException: " + e);
        assertTrue(t.getMessage().contains("text-classification model: PynerTranslator gives entities")
                && t.getMessage().contains("use classify()"), t.getMessage());
    }

    static Stream<Path> wrongTaskCases() {
        return Stream.of(TestArtifacts.get("bert-fp32"), TestArtifacts.get("bert-cls-fp32"), TestArtifacts.get("bert-emb-fp32"));
    }

    static List<LabelScore> json(JsonArray a) {
        List<LabelScore> out = new ArrayList<>();
        for (var e : a) {
            out.add(new LabelScore(e.getAsJsonObject().get("label").getAsString(), e.getAsJsonObject().get("score").getAsFloat()));
        }
        return out;
    }

    static JsonArray jsonOf(List<LabelScore> ranked) {
        JsonArray a = new JsonArray();
        for (LabelScore l : ranked) {
            var o = new com.google.gson.JsonObject();
            o.addProperty("label", l.label());
            o.addProperty("score", (double) l.score());
            a.add(o);
        }
        return a;
    }

    static float[] floats(JsonArray a) {
        float[] v = new float[a.size()];
        for (int i = 0; i < v.length; i++) {
            v[i] = a.get(i).getAsFloat();
        }
        return v;
    }

    static double cosine(float[] a, float[] b) {
        double dot = 0;
        double na = 0;
        double nb = 0;
        for (int i = 0; i < a.length; i++) {
            dot += (double) a[i] * b[i];
            na += (double) a[i] * a[i];
            nb += (double) b[i] * b[i];
        }
        return dot / Math.sqrt(na * nb);
    }
}
