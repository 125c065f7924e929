package dev.pyner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.inference.Predictor;
import ai.djl.modality.Classifications;
import ai.djl.repository.zoo.Criteria;
import ai.djl.repository.zoo.ZooModel;
import ai.djl.translate.DeferredTranslatorFactory;
import dev.pyner.artifact.Golden;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The text-classification and feature-extraction artifacts in plain DJL, with zero pyner code:
 * Criteria with the folder; serving.properties names DJL's TextClassificationTranslatorFactory
 * (output 0 = logits, the function config.json implies) or TextEmbeddingTranslatorFactory (output 0 =
 * last_hidden_state, pooling and normalize as the manifest's). On every golden text plain DJL gives
 * pyner's top-1 label with every label's score within 1e-5, and embeddings with cosine >= 0.9999 to
 * pyner's.
 *
 * <p>Measured limitation (DJL 0.38.0): DJL's TextClassificationTranslator ranks the classes with
 * {@code NDArray.argSort}, which the OnnxRuntime engine hands to its alternative NDArray engine; with
 * only the OnnxRuntime and tokenizers (Rust) engines on the class path that is the Rust engine, whose
 * argSort throws "Not implemented" (with the PyTorch engine on the class path, PyTorch serves it).
 * The test then proves everything up to that call with plain DJL still: the same Criteria's model,
 * DJL's HuggingFaceTokenizer built from the folder with serving.properties' maxLength, output 0 (the
 * logits) and the softmax/sigmoid config.json implies, written out in a few lines of Java.
 */
class DjlPlainTaskTest {

    static Stream<Path> classification() {
        return TestArtifacts.classification().stream();
    }

    static Stream<Path> embedding() {
        return TestArtifacts.embedding().stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("classification")
    void plainDjlClassifiesAsPyner(Path artifact) throws Exception {
        List<String> texts = Golden.read(artifact).texts();
        // pyner one text per call: the batches plain DJL runs (one text, unpadded; int8's dynamic quantization
        // scales activations per batch, so the batch composition matters there).
        List<List<LabelScore>> want = new java.util.ArrayList<>();
        try (PynerModel model = PynerModel.builder().setArtifact(artifact).optSelfCheck(false).build()) {
            for (String t : texts) {
                want.add(model.classify(List.of(t), 0, LongText.TRUNCATE).get(0));
            }
        }
        Criteria<String, Classifications> criteria = Criteria.builder()
                .setTypes(String.class, Classifications.class)
                .optModelPath(artifact)
                .optEngine("OnnxRuntime")
                .optTranslatorFactory(new DeferredTranslatorFactory()) // serving.properties' translatorFactory
                .build();
        double worst = 0;
        try (ZooModel<String, Classifications> model = criteria.loadModel();
             Predictor<String, Classifications> predictor = model.newPredictor()) {
            try {
                predictor.predict(texts.get(0));
            } catch (ai.djl.translate.TranslateException | UnsupportedOperationException e) {
                if (!isArgSortLimitation(e)) {
                    throw e;
                }
                System.out.println(artifact.getFileName() + ": plain DJL's TextClassificationTranslator loads but cannot rank"
                        + " without an NDArray engine that implements argSort (" + rootMessage(e) + "); its logits checked instead");
                logitsThroughPlainDjl(artifact, texts, want);
                return;
            }
            for (int i = 0; i < texts.size(); i++) {
                Classifications got = predictor.predict(texts.get(i));
                List<LabelScore> w = want.get(i);
                assertEquals(w.get(0).label(), got.best().getClassName(), "text " + i + ": " + got + " vs " + w);
                assertEquals(w.size(), got.items().size());
                for (LabelScore l : w) {
                    double d = Math.abs(got.get(l.label()).getProbability() - l.score());
                    worst = Math.max(worst, d);
                    assertTrue(d <= 1e-5, "text " + i + " label " + l.label() + ": DJL " + got.get(l.label()).getProbability()
                            + " vs pyner " + l.score());
                }
            }
        }
        System.out.println(artifact.getFileName() + ": plain DJL top-1 = pyner's on " + texts.size()
                + " texts, worst score difference " + worst);
    }

    static boolean isArgSortLimitation(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof UnsupportedOperationException) {
                for (StackTraceElement f : t.getStackTrace()) {
                    if (f.getMethodName().equals("argSort")) {
                        return true;
                    }
                }
            }
        }
        return false;
    }

    static String rootMessage(Throwable e) {
        Throwable t = e;
        while (t.getCause() != null) {
            t = t.getCause();
        }
        return t.getClass().getSimpleName() + ": " + t.getMessage();
    }

    /**
     * Plain DJL up to the ranking: the folder's model through DJL (NoopTranslator), DJL's tokenizer from
     * the folder with serving.properties' maxLength (truncation, as the translator's), output 0 (logits),
     * then the function DJL's translator applies (config.json: multi-label or one label: sigmoid, else
     * softmax) in float32, and the best label.
     */
    static void logitsThroughPlainDjl(Path artifact, List<String> texts, List<List<LabelScore>> want) throws Exception {
        java.util.Properties serving = new java.util.Properties();
        try (var in = java.nio.file.Files.newInputStream(artifact.resolve("serving.properties"))) {
            serving.load(in);
        }
        var config = com.google.gson.JsonParser.parseString(java.nio.file.Files.readString(artifact.resolve("config.json")))
                .getAsJsonObject();
        var id2label = config.getAsJsonObject("id2label");
        String problem = config.has("problem_type") && !config.get("problem_type").isJsonNull()
                ? config.get("problem_type").getAsString() : null;
        boolean sigmoid = "multi_label_classification".equals(problem) || id2label.size() == 1;
        Criteria<ai.djl.ndarray.NDList, ai.djl.ndarray.NDList> criteria = Criteria.builder()
                .setTypes(ai.djl.ndarray.NDList.class, ai.djl.ndarray.NDList.class)
                .optModelPath(artifact)
                .optEngine("OnnxRuntime")
                .optTranslator(new ai.djl.translate.NoopTranslator())
                .build();
        double worst = 0;
        try (var tokenizer = ai.djl.huggingface.tokenizers.HuggingFaceTokenizer.newInstance(artifact,
                     java.util.Map.of("maxLength", serving.getProperty("maxLength")));
             ZooModel<ai.djl.ndarray.NDList, ai.djl.ndarray.NDList> model = criteria.loadModel();
             Predictor<ai.djl.ndarray.NDList, ai.djl.ndarray.NDList> predictor = model.newPredictor();
             ai.djl.ndarray.NDManager manager = ai.djl.ndarray.NDManager.newBaseManager()) {
            for (int i = 0; i < texts.size(); i++) {
                var enc = tokenizer.encode(texts.get(i));
                var in = new ai.djl.ndarray.NDList(manager.create(new long[][] {enc.getIds()}),
                        manager.create(new long[][] {enc.getAttentionMask()}));
                in.get(0).setName("input_ids");
                in.get(1).setName("attention_mask");
                float[] logits = predictor.predict(in).get(0).toFloatArray();
                float[] scores = new float[logits.length];
                float max = Float.NEGATIVE_INFINITY;
                for (float l : logits) {
                    max = Math.max(max, l);
                }
                float sum = 0;
                for (int j = 0; j < logits.length; j++) {
                    scores[j] = sigmoid ? (float) (1 / (1 + Math.exp(-logits[j]))) : (float) Math.exp(logits[j] - max);
                    sum += scores[j];
                }
                int best = 0;
                for (int j = 0; j < logits.length; j++) {
                    if (!sigmoid) {
                        scores[j] /= sum;
                    }
                    best = scores[j] > scores[best] ? j : best;
                }
                List<LabelScore> w = want.get(i);
                assertEquals(w.get(0).label(), id2label.get(String.valueOf(best)).getAsString(), "text " + i);
                for (LabelScore l : w) {
                    int j = -1;
                    for (String k : id2label.keySet()) {
                        if (id2label.get(k).getAsString().equals(l.label())) {
                            j = Integer.parseInt(k);
                        }
                    }
                    double d = Math.abs(scores[j] - l.score());
                    worst = Math.max(worst, d);
                    assertTrue(d <= 1e-5, "text " + i + " label " + l.label() + ": DJL " + scores[j] + " vs pyner " + l.score());
                }
            }
        }
        System.out.println(artifact.getFileName() + ": plain DJL's model and tokenizer, output 0 through config.json's function:"
                + " top-1 = pyner's on " + texts.size() + " texts, worst score difference " + worst);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("embedding")
    void plainDjlEmbedsAsPyner(Path artifact) throws Exception {
        List<String> texts = Golden.read(artifact).texts();
        List<float[]> want = new java.util.ArrayList<>();
        try (PynerModel model = PynerModel.builder().setArtifact(artifact).optSelfCheck(false).build()) {
            for (String t : texts) {
                want.add(model.embed(List.of(t)).get(0));
            }
        }
        Criteria<String, float[]> criteria = Criteria.builder()
                .setTypes(String.class, float[].class)
                .optModelPath(artifact)
                .optEngine("OnnxRuntime")
                .optTranslatorFactory(new DeferredTranslatorFactory())
                .build();
        double worst = 1;
        try (ZooModel<String, float[]> model = criteria.loadModel();
             Predictor<String, float[]> predictor = model.newPredictor()) {
            for (int i = 0; i < texts.size(); i++) {
                float[] got = predictor.predict(texts.get(i));
                assertEquals(want.get(i).length, got.length, "text " + i);
                double c = TaskGoldenTest.cosine(got, want.get(i));
                worst = Math.min(worst, c);
                assertTrue(c >= 0.9999, "text " + i + ": cosine " + c + " between plain DJL's and pyner's embedding");
            }
        }
        System.out.println(artifact.getFileName() + ": plain DJL embeddings vs pyner's on " + texts.size()
                + " texts, worst cosine " + worst);
    }
}
