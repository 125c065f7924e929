package dev.pyner;

import dev.pyner.artifact.Golden;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Resident memory of a JVM running {@link PynerModel#predict} over many texts (a measurement, not a
 * test; docs/jvm.md quotes it): after a warm-up, VmRSS (from /proc/self/status) is sampled every
 * {@code every} texts and must stay flat: every OnnxTensor and OrtSession.Result is closed.
 *
 * <pre>
 * cd jvm_bridge &amp;&amp; java -Xmx512m -cp target/classes:target/test-classes:$(cat target/classpath.txt) \
 *     dev.pyner.RssSoak ARTIFACT_DIR [TEXTS=50000] [BATCH=64]
 * </pre>
 * Texts: the artifact's golden texts, each with its running number appended (so no two are equal).
 */
public final class RssSoak {

    private RssSoak() {}

    public static void main(String[] args) throws Exception {
        Path artifact = Path.of(args[0]);
        int total = args.length > 1 ? Integer.parseInt(args[1]) : 50_000;
        int batch = args.length > 2 ? Integer.parseInt(args[2]) : 64;
        int warmup = Math.min(total / 10, 5_000);
        int every = Math.max(batch, total / 20);
        List<String> base = Golden.read(artifact).texts();
        try (PynerModel model = PynerModel.builder().setArtifact(artifact).optThreads(1).build()) {
            long afterLoad = rssKiB();
            System.out.printf(Locale.ROOT, "%s: VmRSS after load %d MiB; %d texts in batches of %d%n",
                    model, afterLoad >> 10, total, batch);
            long warm = -1;
            long min = Long.MAX_VALUE;
            long max = 0;
            long entities = 0;
            long t0 = System.nanoTime();
            int nextSample = warmup;
            for (int done = 0; done < total; ) {
                List<String> texts = new ArrayList<>(batch);
                for (int i = 0; i < batch && done + i < total; i++) {
                    texts.add(base.get((done + i) % base.size()) + " " + (done + i));
                }
                for (List<Entity> es : model.predict(texts, AggregationStrategy.FIRST)) {
                    entities += es.size();
                }
                done += texts.size();
                if (done >= nextSample) {
                    long rss = rssKiB();
                    if (warm < 0) {
                        warm = rss;
                    }
                    min = Math.min(min, rss);
                    max = Math.max(max, rss);
                    Runtime rt = Runtime.getRuntime();
                    System.out.printf(Locale.ROOT, "%6d texts: VmRSS %d MiB (heap used %d MiB)%n", done, rss >> 10,
                            (rt.totalMemory() - rt.freeMemory()) >> 20);
                    nextSample += every;
                }
            }
            double s = (System.nanoTime() - t0) / 1e9;
            long last = rssKiB();
            System.out.printf(Locale.ROOT, "%d texts, %d entities in %.0f s; VmRSS after warm-up (%d texts): %d MiB, then"
                            + " min %d / max %d MiB, at the end %d MiB: %+d MiB since warm-up%n",
                    total, entities, s, warmup, warm >> 10, min >> 10, max >> 10, last >> 10, (last - warm) >> 10);
        }
    }

    static long rssKiB() throws java.io.IOException {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.startsWith("VmRSS:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        throw new IllegalStateException("no VmRSS in /proc/self/status (Linux only)");
    }
}
