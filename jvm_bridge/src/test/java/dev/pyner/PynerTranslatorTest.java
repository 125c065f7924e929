package dev.pyner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.inference.Predictor;
import ai.djl.repository.zoo.Criteria;
import ai.djl.repository.zoo.ZooModel;
import ai.djl.translate.TranslateException;
import dev.pyner.artifact.Golden;
import dev.pyner.djl.PynerTranslator;
import dev.pyner.djl.PynerTranslatorFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * DJL users get the reference entities: Criteria / ZooModel / Predictor with the pyner translator
 * factory reproduce the golden entities (computed by the Python runtime) for every family and
 * strategy, fp32 and fp16, including the multi-window long document; {@code batchPredict} runs the
 * texts as one batch.
 *
 * <p>int8 is different: dynamic quantization computes each activation's scale over the whole batch
 * tensor, so scores depend (by ~1e-4) on which windows share a batch, and near-ties can flip. The
 * golden fixtures ran all golden texts in default-sized batches; the translator runs the windows of
 * one call as one batch. For int8 the oracle is therefore PynerModel with no batch limits given the
 * same texts (the same single batch; PynerModel itself reproduces the Python fixtures bit for bit in
 * GoldenTest).
 */
class PynerTranslatorTest {

    static Stream<Path> artifacts() {
        return TestArtifacts.all().stream();
    }

    static Criteria<String, Entity[]> criteria(Path artifact, String aggregation) {
        return Criteria.builder()
                .setTypes(String.class, Entity[].class)
                .optModelPath(artifact)
                .optEngine("OnnxRuntime")
                .optTranslatorFactory(new PynerTranslatorFactory())
                .optArgument("aggregation", aggregation)
                .build();
    }

    /** PynerModel batching as the translator does: all windows of a call in one batch. */
    static PynerModel oneBatchOracle(Path artifact) throws PynerException {
        return PynerModel.builder().setArtifact(artifact).optSelfCheck(false)
                .optMaxBatchSize(Integer.MAX_VALUE).optMaxBatchTokens(Integer.MAX_VALUE)
                .optMaxPadding(Double.POSITIVE_INFINITY).build();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("artifacts")
    void djlPredictorReproducesTheReferenceEntities(Path artifact) throws Exception {
        Golden golden = Golden.read(artifact);
        List<String> texts = golden.texts();
        boolean int8 = artifact.getFileName().toString().endsWith("-int8");
        List<String> failures = new ArrayList<>();
        int compared = 0;
        try (PynerModel oracle = oneBatchOracle(artifact)) {
            Comparison cmp = new Comparison(int8 ? 0.0 : oracle.manifest().scoreTolerance());
            for (AggregationStrategy s : AggregationStrategy.values()) {
                List<List<Entity>> want = int8 ? oracle.predict(texts, s) : null;
                try (ZooModel<String, Entity[]> model = criteria(artifact, s.wireName()).loadModel();
                     Predictor<String, Entity[]> predictor = model.newPredictor()) {
                    List<Entity[]> batch = predictor.batchPredict(texts); // one batch: every window of every text
                    for (int i = 0; i < texts.size(); i++) {
                        Golden.Case c = golden.cases().get(i);
                        List<Entity> got = Arrays.asList(batch.get(i));
                        if (int8) {
                            cmp.entities(s + " " + c.id(), got, Comparison.toJson(want.get(i)));
                        } else {
                            cmp.entities(s + " " + c.id(), got, c.entities(s.wireName()));
                        }
                        compared++;
                    }
                    // One text per call (DJL's predict(): a batch of one) gives that text's reference too.
                    Golden.Case longest = golden.cases().get(golden.ids().indexOf("long-01"));
                    List<Entity> single = Arrays.asList(predictor.predict(longest.text()));
                    if (int8) {
                        cmp.entities(s + " long-01 alone", single, Comparison.toJson(oracle.predict(longest.text(), s)));
                    } else {
                        cmp.entities(s + " long-01 alone", single, longest.entities(s.wireName()));
                    }
                }
            }
            failures.addAll(cmp.differences());
            assertTrue(cmp.entities() > 0, "no entities compared");
        }
        assertTrue(failures.isEmpty(), failures.size() + " differences in " + compared + " texts:\n" + String.join("\n", failures));
    }

    @Test
    void theArtifactIsReadOnceAndTheTokenizerClosedWithTheModel(@TempDir Path tmp) throws Exception {
        Path copy = BadInputTest.copy(TestArtifacts.get("bert-fp32"), tmp.resolve("bert-fp32"));
        String text = "Angela Merkel met Emmanuel Macron in Berlin.";
        PynerTranslator translator;
        List<Entity> first;
        try (ZooModel<String, Entity[]> model = criteria(copy, "simple").loadModel()) {
            translator = (PynerTranslator) model.getTranslator();
            try (Predictor<String, Entity[]> p = model.newPredictor()) {
                first = Arrays.asList(p.predict(text));
            }
            assertTrue(translator.isLoaded());
            // A file changes after the first prepare(): a second predictor must not read or hash the artifact again
            // (before, every prepare() re-checked every file and this one would fail on golden.json's sha256).
            Files.writeString(copy.resolve("golden.json"), " ", StandardCharsets.UTF_8, StandardOpenOption.APPEND);
            try (Predictor<String, Entity[]> p = model.newPredictor()) {
                assertEquals(first, Arrays.asList(p.predict(text)));
            }
        }
        assertFalse(translator.isLoaded(), "closing the model closes the translator's tokenizer");
        // A new model of the changed folder is refused: the checksums are checked once per model.
        Exception e = assertThrows(Exception.class, () -> {
            try (ZooModel<String, Entity[]> model = criteria(copy, "simple").loadModel();
                 Predictor<String, Entity[]> p = model.newPredictor()) {
                p.predict(text);
            }
        });
        Throwable t = e;
        while (t.getCause() != null && !(t instanceof PynerException)) {
            t = t.getCause();
        }
        assertTrue(t instanceof PynerException && t.getMessage().contains("golden.json"), String.valueOf(t));
    }

    @Test
    void batchPredictEqualsOneTextAtATime() throws Exception {
        Path artifact = TestArtifacts.get("roberta-fp32");
        List<String> texts = Golden.read(artifact).texts();
        try (ZooModel<String, Entity[]> model = criteria(artifact, "first").loadModel();
             Predictor<String, Entity[]> predictor = model.newPredictor()) {
            List<Entity[]> batch = predictor.batchPredict(texts);
            assertEquals(texts.size(), batch.size());
            Comparison cmp = new Comparison(1e-5); // fp32: the same texts in other batches
            for (int i = 0; i < texts.size(); i++) {
                List<Entity> alone = Arrays.asList(predictor.predict(texts.get(i)));
                cmp.entities("texts[" + i + "]", Arrays.asList(batch.get(i)), Comparison.toJson(alone));
            }
            assertTrue(cmp.ok(), String.join("\n", cmp.differences()));
            assertTrue(cmp.entities() > 0);
            Exception e = assertThrows(Exception.class, () -> predictor.batchPredict(Arrays.asList("fine", null)));
            Throwable t = e;
            while (t.getCause() != null && !(t instanceof IllegalArgumentException)) {
                t = t.getCause();
            }
            assertEquals("texts[1] is null, not a String", t.getMessage());
        }
    }

    @Test
    void unknownAggregationIsRefused() {
        Criteria<String, Entity[]> criteria = criteria(TestArtifacts.get("bert-fp32"), "avg");
        Exception e = assertThrows(Exception.class, criteria::loadModel);
        Throwable t = e;
        while (t.getCause() != null && !(t instanceof TranslateException)) {
            t = t.getCause();
        }
        assertEquals("unknown aggregation strategy 'avg'; valid: none, simple, first, average, max", t.getMessage());
    }
}
