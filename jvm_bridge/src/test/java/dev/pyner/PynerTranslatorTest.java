package dev.pyner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.inference.Predictor;
import ai.djl.repository.zoo.Criteria;
import ai.djl.repository.zoo.ZooModel;
import ai.djl.translate.TranslateException;
import dev.pyner.djl.PynerTranslatorFactory;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * DJL users get the reference entities: Criteria / ZooModel / Predictor with the pyner translator
 * factory reproduce the golden entities (computed by the Python runtime) for every family and
 * strategy, fp32 and fp16, including the multi-window long document.
 *
 * <p>int8 is different: dynamic quantization computes each activation's scale over the whole batch
 * tensor, so scores depend (by ~1e-4) on which windows share a batch, and near-ties can flip. The
 * golden fixtures ran all golden texts in shared batches; the translator runs one text per batch.
 * For int8 the oracle is therefore PynerModel called with that one text and no batch limits (the same
 * single batch; PynerModel itself reproduces the Python fixtures bit for bit in GoldenTest).
 */
class PynerTranslatorTest {

    static Stream<Path> artifacts() {
        return TestArtifacts.all().stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("artifacts")
    void djlPredictorReproducesTheReferenceEntities(Path artifact) throws Exception {
        List<GoldenCases.Case> cases = GoldenCases.read(artifact);
        boolean int8 = artifact.getFileName().toString().endsWith("-int8");
        double tol;
        // int8 oracle: one text per call and all its windows in one batch, as the translator runs them.
        PynerModel oracle = PynerModel.builder().setArtifact(artifact).optSelfCheck(false)
                .optMaxBatchSize(Integer.MAX_VALUE).optMaxBatchTokens(Integer.MAX_VALUE)
                .optMaxPadding(Double.POSITIVE_INFINITY).build();
        tol = int8 ? 0.0 : oracle.manifest().scoreTolerance();
        List<String> failures = new ArrayList<>();
        int compared = 0;
        for (AggregationStrategy s : AggregationStrategy.values()) {
            Criteria<String, Entity[]> criteria = Criteria.builder()
                    .setTypes(String.class, Entity[].class)
                    .optModelPath(artifact)
                    .optEngine("OnnxRuntime")
                    .optTranslatorFactory(new PynerTranslatorFactory())
                    .optArgument("aggregation", s.wireName())
                    .build();
            try (ZooModel<String, Entity[]> model = criteria.loadModel();
                 Predictor<String, Entity[]> predictor = model.newPredictor()) {
                for (GoldenCases.Case c : cases) {
                    List<Entity> got = Arrays.asList(predictor.predict(c.text));
                    String d = int8 ? (got.equals(oracle.predict(c.text, s)) ? null : got + " vs " + oracle.predict(c.text, s))
                            : GoldenCases.diff(got, c.entities(s), tol);
                    if (d != null) {
                        failures.add(s + " " + c.id + ": " + d);
                    }
                    compared++;
                }
            }
        }
        oracle.close();
        assertTrue(failures.isEmpty(), failures.size() + " of " + compared + " differ:\n" + String.join("\n", failures));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("artifacts")
    void unknownAggregationIsRefused(Path artifact) {
        if (!artifact.getFileName().toString().equals("bert-fp32")) {
            return;
        }
        Criteria<String, Entity[]> criteria = Criteria.builder()
                .setTypes(String.class, Entity[].class)
                .optModelPath(artifact)
                .optEngine("OnnxRuntime")
                .optTranslatorFactory(new PynerTranslatorFactory())
                .optArgument("aggregation", "avg")
                .build();
        Exception e = assertThrows(Exception.class, criteria::loadModel);
        Throwable t = e;
        while (t.getCause() != null && !(t instanceof TranslateException)) {
            t = t.getCause();
        }
        assertEquals("unknown aggregation strategy 'avg'; valid: none, simple, first, average, max", t.getMessage());
    }
}
