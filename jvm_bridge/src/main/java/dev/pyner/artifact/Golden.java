package dev.pyner.artifact;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.pyner.AggregationStrategy;
import dev.pyner.Entity;
import dev.pyner.PynerException;
import dev.pyner.PynerModel;
import dev.pyner.ScoredText;
import dev.pyner.Window;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.Objects;

/**
 * The golden fixtures {@code golden.json}, and the comparison every runtime must pass: token ids,
 * type ids, offsets, special-token masks and per-token labels identical; scores within the
 * manifest's tolerance; entities per strategy identical (label, start, end, word, index; score
 * within the tolerance). Mirrors {@code pyner.golden.compare_model}.
 */
public final class Golden {

    /** The newest golden format this library reads. */
    public static final int FORMAT_VERSION = 1;

    private final Path path;
    private final JsonArray cases;

    private Golden(Path path, JsonArray cases) {
        this.path = path;
        this.cases = cases;
    }

    /**
     * Reads {@code folder/golden.json}.
     *
     * @param folder the artifact folder
     * @return the fixtures
     * @throws PynerException when missing, not JSON, newer than supported, or without cases
     */
    public static Golden read(Path folder) throws PynerException {
        Path path = folder.resolve(Manifest.GOLDEN_FILE);
        JsonObject o = Manifest.readJsonObject(path);
        int version = o.has("format_version") ? o.get("format_version").getAsInt() : 0;
        if (version > FORMAT_VERSION) {
            throw new PynerException(path, "golden format " + version + " is newer than this pyner-jvm supports (" + FORMAT_VERSION + ")");
        }
        if (!o.has("cases") || !o.get("cases").isJsonArray() || o.getAsJsonArray("cases").size() == 0) {
            throw new PynerException(path, "holds no golden cases");
        }
        return new Golden(path, o.getAsJsonArray("cases"));
    }

    /** @return the golden.json path */
    public Path path() {
        return path;
    }

    /** @return the case texts, in file order */
    public List<String> texts() {
        List<String> out = new ArrayList<>(cases.size());
        for (JsonElement c : cases) {
            out.add(c.getAsJsonObject().get("text").getAsString());
        }
        return out;
    }

    /** @return the case ids, in file order */
    public List<String> ids() {
        List<String> out = new ArrayList<>(cases.size());
        for (JsonElement c : cases) {
            out.add(c.getAsJsonObject().get("id").getAsString());
        }
        return out;
    }

    /**
     * Runs every golden text through {@code model} (all at once, with the default batches, as the
     * fixtures were computed) and compares.
     *
     * @param model the model
     * @param tolerance per-token score tolerance
     * @return the comparison (never throws on a difference)
     */
    public Report compare(PynerModel model, double tolerance) {
        Report r = new Report(tolerance);
        List<ScoredText> scored = model.score(texts());
        for (int c = 0; c < cases.size(); c++) {
            JsonObject gc = cases.get(c).getAsJsonObject();
            String cid = gc.get("id").getAsString();
            ScoredText st = scored.get(c);
            r.cases++;
            JsonArray gw = gc.getAsJsonArray("windows");
            if (gw.size() != st.windows().size()) {
                r.add(cid + ": " + st.windows().size() + " windows, golden has " + gw.size());
                continue;
            }
            for (int w = 0; w < gw.size(); w++) {
                compareWindow(r, cid + " window " + w, st.windows().get(w), st.scores().get(w), st.labels(w),
                        gw.get(w).getAsJsonObject());
            }
            JsonObject ents = gc.has("entities") ? gc.getAsJsonObject("entities") : new JsonObject();
            for (AggregationStrategy s : AggregationStrategy.values()) {
                if (ents.has(s.wireName())) {
                    List<Entity> got = model.decode(st, s, null);
                    compareEntities(r, cid + " entities[" + s.wireName() + "]", got, ents.getAsJsonArray(s.wireName()));
                }
            }
        }
        return r;
    }

    private static void compareWindow(Report r, String where, Window w, float[][] scores, int[] labels, JsonObject g) {
        long[] ids = longs(g.getAsJsonArray("input_ids"));
        int first = firstDiff(w.inputIds(), ids);
        if (first >= 0) {
            r.add(where + ": input_ids differ at token " + first + describe(w.inputIds(), ids, first));
            return;
        }
        if (g.has("type_ids")) {
            first = firstDiff(w.typeIds(), longs(g.getAsJsonArray("type_ids")));
            if (first >= 0) {
                r.add(where + ": type_ids differ at token " + first);
                return;
            }
        }
        JsonArray offs = g.getAsJsonArray("offsets");
        for (int t = 0; t < offs.size(); t++) {
            JsonArray p = offs.get(t).getAsJsonArray();
            if (p.get(0).getAsInt() != w.starts()[t] || p.get(1).getAsInt() != w.ends()[t]) {
                r.add(where + ": offsets differ at token " + t + " ([" + w.starts()[t] + ", " + w.ends()[t]
                        + "] != golden " + p + ")");
                return;
            }
        }
        first = firstDiff(toLongs(w.specialTokensMask()), longs(g.getAsJsonArray("special_tokens_mask")));
        if (first >= 0) {
            r.add(where + ": special_tokens_mask differ at token " + first);
            return;
        }
        r.tokens += w.length();
        first = firstDiff(toLongs(labels), longs(g.getAsJsonArray("labels")));
        if (first >= 0) {
            r.add(where + ": label of token " + first + " is " + labels[first] + ", golden "
                    + g.getAsJsonArray("labels").get(first).getAsInt());
        }
        JsonArray gs = g.getAsJsonArray("scores");
        double worst = 0;
        for (int t = 0; t < gs.size(); t++) {
            JsonArray row = gs.get(t).getAsJsonArray();
            for (int j = 0; j < row.size(); j++) {
                double d = Math.abs((double) scores[t][j] - row.get(j).getAsDouble());
                if (Double.isNaN(d)) {
                    d = Double.POSITIVE_INFINITY;
                }
                worst = Math.max(worst, d);
            }
        }
        r.maxScoreDiff = Math.max(r.maxScoreDiff, worst);
        if (worst > r.tolerance) {
            r.add(where + ": scores differ by " + fmt(worst) + " (tolerance " + r.tolerance + ")");
        }
    }

    private static void compareEntities(Report r, String where, List<Entity> got, JsonArray want) {
        r.entities += want.size();
        if (got.size() != want.size()) {
            r.add(where + ": " + got.size() + " entities, golden has " + want.size());
            return;
        }
        for (int j = 0; j < want.size(); j++) {
            JsonObject w = want.get(j).getAsJsonObject();
            Entity g = got.get(j);
            String labelKey = w.has("entity_group") ? "entity_group" : "entity";
            String diff = null;
            if (g.isGroup() != w.has("entity_group")) {
                diff = "kind (" + (g.isGroup() ? "entity_group" : "entity") + ") != golden " + labelKey;
            } else if (!g.label().equals(w.get(labelKey).getAsString())) {
                diff = labelKey + ": '" + g.label() + "' != golden '" + w.get(labelKey).getAsString() + "'";
            } else if (g.start() != w.get("start").getAsInt()) {
                diff = "start: " + g.start() + " != golden " + w.get("start").getAsInt();
            } else if (g.end() != w.get("end").getAsInt()) {
                diff = "end: " + g.end() + " != golden " + w.get("end").getAsInt();
            } else if (!g.word().equals(w.get("word").getAsString())) {
                diff = "word: '" + g.word() + "' != golden '" + w.get("word").getAsString() + "'";
            } else if (w.has("index") && g.index().orElse(-1) != w.get("index").getAsInt()) {
                diff = "index: " + g.index().orElse(-1) + " != golden " + w.get("index").getAsInt();
            }
            if (diff != null) {
                r.add(where + "[" + j + "]." + diff);
                continue;
            }
            double d = Math.abs(g.score() - w.get("score").getAsDouble());
            if (Double.isNaN(d)) {
                d = Double.POSITIVE_INFINITY;
            }
            r.maxScoreDiff = Math.max(r.maxScoreDiff, d);
            if (!(d <= r.tolerance)) {
                r.add(where + "[" + j + "].score: " + g.score() + " differs from golden " + w.get("score").getAsDouble()
                        + " by " + fmt(d));
            }
        }
    }

    private static String describe(long[] got, long[] want, int i) {
        return " (" + (i < got.length ? got[i] : "end") + " != golden " + (i < want.length ? want[i] : "end") + ")";
    }

    private static int firstDiff(long[] a, long[] b) {
        int n = Math.min(a.length, b.length);
        for (int i = 0; i < n; i++) {
            if (a[i] != b[i]) {
                return i;
            }
        }
        return a.length == b.length ? -1 : n;
    }

    private static long[] longs(JsonArray a) {
        long[] out = new long[a.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.get(i).getAsLong();
        }
        return out;
    }

    private static long[] toLongs(int[] a) {
        return Arrays.stream(a).asLongStream().toArray();
    }

    private static String fmt(double d) {
        return String.format(Locale.ROOT, "%.3g", d);
    }

    /** The outcome of a golden comparison, with counts for reports. */
    public static final class Report {
        private final double tolerance;
        private int cases;
        private int tokens;
        private int entities;
        private double maxScoreDiff;
        private final List<String> differences = new ArrayList<>();

        Report(double tolerance) {
            this.tolerance = tolerance;
        }

        void add(String difference) {
            differences.add(Objects.requireNonNull(difference));
        }

        /** @return true when nothing differs */
        public boolean ok() {
            return differences.isEmpty();
        }

        /** @return every difference, in case order */
        public List<String> differences() {
            return Collections.unmodifiableList(differences);
        }

        /** @return cases compared */
        public int cases() {
            return cases;
        }

        /** @return tokens compared */
        public int tokens() {
            return tokens;
        }

        /** @return golden entities compared */
        public int entities() {
            return entities;
        }

        /** @return the worst per-token or entity score difference */
        public double maxScoreDiff() {
            return maxScoreDiff;
        }

        /** @return the tolerance used */
        public double tolerance() {
            return tolerance;
        }

        /** @return a one-line summary, as Python's Comparison.summary() */
        public String summary() {
            String status = ok() ? "OK" : differences.size() + " difference(s)";
            return status + ": " + cases + " cases, " + tokens + " tokens, " + entities + " entities compared; worst score"
                    + " difference " + fmt(maxScoreDiff) + " (tolerance " + tolerance + ")";
        }
    }
}
