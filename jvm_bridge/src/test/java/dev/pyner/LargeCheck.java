package dev.pyner;

import ai.djl.inference.Predictor;
import ai.djl.modality.nlp.translator.NamedEntity;
import ai.djl.repository.zoo.Criteria;
import ai.djl.repository.zoo.ZooModel;
import ai.djl.translate.DeferredTranslatorFactory;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import dev.pyner.artifact.Golden;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/**
 * One artifact (typically a large one: scripts/test-large) on every JVM path, measured: PynerModel's
 * load time (checksums of every file included) and resident memory once loaded and while predicting,
 * its golden self-check; PynerTranslatorFactory's entities against PynerModel's; plain DJL through
 * serving.properties (loads and runs). Prints one JSON object; exit 1 when any path disagrees.
 *
 * <pre>
 * cd jvm_bridge &amp;&amp; java -cp target/classes:target/test-classes:$(cat target/classpath.txt) \
 *     dev.pyner.LargeCheck ARTIFACT_DIR [THREADS=2]
 * </pre>
 */
public final class LargeCheck {

    /** Golden texts per translator batchPredict call. */
    private static final int CHUNK = 8;

    private LargeCheck() {}

    public static void main(String[] args) throws Exception {
        Path artifact = Path.of(args[0]);
        int threads = args.length > 1 ? Integer.parseInt(args[1]) : 2;
        JsonObject out = new JsonObject();
        out.addProperty("artifact", artifact.toString());
        out.addProperty("rss_mib_before", RssSoak.rssKiB() >> 10);
        Golden golden = Golden.read(artifact);
        List<String> texts = golden.texts();
        boolean ok = true;

        long t0 = System.nanoTime();
        try (PynerModel model = PynerModel.builder().setArtifact(artifact).optThreads(threads).optSelfCheck(false).build()) {
            out.addProperty("load_s", (System.nanoTime() - t0) / 1e9);
            out.addProperty("rss_mib_loaded", RssSoak.rssKiB() >> 10);
            long t1 = System.nanoTime();
            Comparison self = model.selfCheck();
            out.addProperty("golden_s", (System.nanoTime() - t1) / 1e9);
            out.addProperty("rss_mib_predicting", RssSoak.rssKiB() >> 10);
            out.addProperty("golden", self.summary());
            out.addProperty("golden_ok", self.ok());
            out.addProperty("golden_max_score_diff", self.maxScoreDiff());
            ok &= self.ok();
        }

        // PynerTranslatorFactory: the reference entities through DJL's Criteria/Predictor
        long t2 = System.nanoTime();
        try (PynerModel oracle = PynerTranslatorTest.oneBatchOracle(artifact);
             ZooModel<String, Entity[]> zoo = PynerTranslatorTest.criteria(artifact, "simple").loadModel();
             Predictor<String, Entity[]> predictor = zoo.newPredictor()) {
            out.addProperty("translator_load_s", (System.nanoTime() - t2) / 1e9);
            // A batchPredict call is one model run over all its texts' windows (the translator's contract), so
            // its memory grows with the call: chunks of CHUNK texts, the oracle given the same chunks (one batch
            // each). All 35 golden texts at once took DeBERTa-v3-large fp32 past 15 GB (relative attention).
            Comparison cmp = new Comparison(0.0);
            for (int from = 0; from < texts.size(); from += CHUNK) {
                List<String> chunk = texts.subList(from, Math.min(texts.size(), from + CHUNK));
                List<Entity[]> got = predictor.batchPredict(chunk);
                List<List<Entity>> want = oracle.predict(chunk, AggregationStrategy.SIMPLE);
                for (int i = 0; i < got.size(); i++) {
                    cmp.entities(golden.ids().get(from + i), Arrays.asList(got.get(i)), Comparison.toJson(want.get(i)));
                }
            }
            out.addProperty("translator_ok", cmp.ok());
            out.addProperty("translator_entities", cmp.entities());
            ok &= cmp.ok();
        }

        // plain DJL, zero pyner code: serving.properties names DJL's own translator
        Criteria<String, NamedEntity[]> criteria = Criteria.builder()
                .setTypes(String.class, NamedEntity[].class)
                .optModelPath(artifact)
                .optEngine("OnnxRuntime")
                .optTranslatorFactory(new DeferredTranslatorFactory())
                .build();
        long t3 = System.nanoTime();
        try (ZooModel<String, NamedEntity[]> model = criteria.loadModel();
             Predictor<String, NamedEntity[]> predictor = model.newPredictor()) {
            out.addProperty("plain_djl_load_s", (System.nanoTime() - t3) / 1e9);
            int entities = 0;
            for (String text : texts.subList(0, Math.min(8, texts.size()))) {
                entities += predictor.predict(text).length;
            }
            out.addProperty("plain_djl_runs", true);
            out.addProperty("plain_djl_entities_on_8_texts", entities);
        }
        out.addProperty("ok", ok);
        String json = new GsonBuilder().setPrettyPrinting().create().toJson(out);
        if (args.length > 2) {
            Files.writeString(Path.of(args[2]), json);
        }
        System.out.println(json);
        System.exit(ok ? 0 : 1);
    }
}
