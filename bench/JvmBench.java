// The JVM in-process contender of the `realtext` scenario (bench/realtext.py runs it).
//
// Launched as a single-file source program (Java 11+):
//   java -cp <jvm_bridge classes + dependencies> bench/JvmBench.java ARTIFACT TEXTS.json OUT.json THREADS MIN_SECONDS MIN_REPS [wall|cpu]
// It loads the artifact with dev.pyner.PynerModel (as a Scala or Java pipeline would), runs one
// full warm-up pass (JIT), then times predict(texts, SIMPLE) until MIN_REPS passes and MIN_SECONDS
// are done, and writes {"median_s", "reps", "times_s", "entities"} as JSON. Timing happens inside
// the JVM: no Python, no pyjnius conversions in the measured path.

import com.google.gson.Gson;
import com.google.gson.reflect.TypeToken;
import dev.pyner.AggregationStrategy;
import dev.pyner.Entity;
import dev.pyner.PynerModel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

public class JvmBench {
    public static void main(String[] args) throws Exception {
        Path artifact = Path.of(args[0]);
        Path textsFile = Path.of(args[1]);
        Path out = Path.of(args[2]);
        int threads = Integer.parseInt(args[3]);
        double minSeconds = Double.parseDouble(args[4]);
        int minReps = Integer.parseInt(args[5]);
        // "cpu": this thread's CPU time (with one ORT thread, inference runs on the calling thread)
        boolean cpu = args.length > 6 && args[6].equals("cpu");
        java.lang.management.ThreadMXBean mx = java.lang.management.ManagementFactory.getThreadMXBean();
        Gson gson = new Gson();
        List<String> texts = gson.fromJson(Files.readString(textsFile, StandardCharsets.UTF_8),
                new TypeToken<List<String>>() {}.getType());
        try (PynerModel model = PynerModel.builder().setArtifact(artifact).optThreads(threads).build()) {
            model.predict(texts, AggregationStrategy.SIMPLE); // warm-up: one full pass
            List<Double> times = new ArrayList<>();
            List<List<Entity>> result = null;
            double total = 0;
            while (times.size() < minReps || total < minSeconds) {
                long t0 = cpu ? mx.getCurrentThreadCpuTime() : System.nanoTime();
                result = model.predict(texts, AggregationStrategy.SIMPLE);
                double dt = ((cpu ? mx.getCurrentThreadCpuTime() : System.nanoTime()) - t0) / 1e9;
                times.add(dt);
                total += dt;
            }
            List<Double> sorted = new ArrayList<>(times);
            Collections.sort(sorted);
            int n = sorted.size();
            double median = n % 2 == 1 ? sorted.get(n / 2) : (sorted.get(n / 2 - 1) + sorted.get(n / 2)) / 2;
            List<List<Map<String, Object>>> entities = new ArrayList<>();
            for (List<Entity> perText : result) {
                List<Map<String, Object>> row = new ArrayList<>();
                for (Entity e : perText) {
                    Map<String, Object> m = new LinkedHashMap<>();
                    m.put("entity_group", e.label());
                    m.put("score", e.score());
                    m.put("word", e.word());
                    m.put("start", e.start());
                    m.put("end", e.end());
                    row.add(m);
                }
                entities.add(row);
            }
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("median_s", median);
            o.put("reps", n);
            o.put("times_s", times);
            o.put("threads", model.threads());
            o.put("onnxruntime", model.onnxRuntimeVersion());
            o.put("entities", entities);
            Files.writeString(out, gson.toJson(o), StandardCharsets.UTF_8);
        }
    }
}
