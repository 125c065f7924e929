package dev.pyner;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import dev.pyner.artifact.Golden;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.EnumSet;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.Set;
import java.util.function.BiFunction;

/**
 * The one comparison over the golden schema (mirrors {@code pyner.golden.Comparison}): windows'
 * token ids, type ids, offsets, special-token masks and per-token labels identical; scores within
 * the tolerance; entities identical (kind, label, start, end, word, index; score within the
 * tolerance). For the other tasks (docs/tasks.md): text classification's window logits and scores
 * within the tolerance and its ranked labels in the same order (scores within the tolerance); feature
 * extraction's embeddings within the tolerance, value by value. Bit-identical values are counted
 * ({@link #identicalValues()} of {@link #values()}). The golden self-check, the JUnit tests and the
 * Scala sample's tests all compare through it. Accumulates counts and every difference; not
 * thread-safe.
 */
public final class Comparison {

    /** What differs: a window's field (WINDOWS: their number), or an entity's (ENTITY_COUNT: their number). */
    public enum Kind {
        /** The number of windows of a text. */
        WINDOWS,
        /** A window's token ids. */
        INPUT_IDS,
        /** A window's token type ids. */
        TYPE_IDS,
        /** A window's character offsets. */
        OFFSETS,
        /** A window's special-token mask. */
        SPECIAL_TOKENS_MASK,
        /** A window's per-token labels (argmax). */
        LABELS,
        /** A window's per-token scores, beyond the tolerance. */
        SCORES,
        /** The number of entities of a text and strategy. */
        ENTITY_COUNT,
        /** An entity's kind (token or group). */
        ENTITY_KIND,
        /** An entity's label. */
        ENTITY_LABEL,
        /** An entity's start. */
        ENTITY_START,
        /** An entity's end. */
        ENTITY_END,
        /** An entity's word. */
        ENTITY_WORD,
        /** A token entity's index. */
        ENTITY_INDEX,
        /** An entity's score, beyond the tolerance. */
        ENTITY_SCORE,
        /** Text classification: a window's logits, beyond the tolerance (or of another size). */
        LOGITS,
        /** Text classification: the ranked labels' order (or their number). */
        RANKED_LABELS,
        /** Text classification: a ranked label's score, beyond the tolerance. */
        RANKED_SCORES,
        /** Feature extraction: an embedding's values, beyond the tolerance (or of another size). */
        EMBEDDING
    }

    private final double tolerance;
    private int cases;
    private int tokens;
    private int entities;
    private int identicalScores;
    private int values;
    private int identicalValues;
    private int rankings;
    private int embeddings;
    private double maxScoreDiff;
    private final List<String> differences = new ArrayList<>();
    private final Set<Kind> kinds = EnumSet.noneOf(Kind.class);

    /**
     * An empty comparison.
     *
     * @param tolerance per-token and entity score tolerance
     */
    public Comparison(double tolerance) {
        this.tolerance = tolerance;
    }

    /**
     * Compares scored golden texts with their fixtures: windows, then the entities of every strategy
     * the fixtures hold.
     *
     * @param golden the fixtures
     * @param scored the golden texts scored by the runtime under test, in case order
     * @param decode turns a scored text into entities with a strategy
     * @param tolerance score tolerance
     * @return the comparison (never throws on a difference)
     */
    public static Comparison golden(Golden golden, List<ScoredText> scored,
                                    BiFunction<ScoredText, AggregationStrategy, List<Entity>> decode, double tolerance) {
        Comparison r = new Comparison(tolerance);
        List<Golden.Case> cases = golden.cases();
        if (scored.size() != cases.size()) {
            throw new IllegalArgumentException(scored.size() + " scored texts for " + cases.size() + " golden cases");
        }
        for (int c = 0; c < cases.size(); c++) {
            Golden.Case gc = cases.get(c);
            ScoredText st = scored.get(c);
            r.cases++;
            if (!r.windows(gc.id(), st, gc.windows())) {
                continue;
            }
            for (AggregationStrategy s : AggregationStrategy.values()) {
                JsonArray want = gc.entities(s.wireName());
                if (want != null) {
                    r.entities(gc.id() + " entities[" + s.wireName() + "]", decode.apply(st, s), want);
                }
            }
        }
        return r;
    }

    /**
     * Compares a scored text's windows with golden windows.
     *
     * @param where the case, for messages
     * @param st the scored text
     * @param golden golden window objects
     * @return false when the window counts differ (nothing else compared)
     */
    public boolean windows(String where, ScoredText st, JsonArray golden) {
        if (golden.size() != st.windows().size()) {
            add(Kind.WINDOWS, where + ": " + st.windows().size() + " windows, golden has " + golden.size());
            return false;
        }
        for (int w = 0; w < golden.size(); w++) {
            window(where + " window " + w, st.windows().get(w), st.scores().get(w), st.labels(w), golden.get(w).getAsJsonObject());
        }
        return true;
    }

    /** Token ids, type ids, offsets and special mask identical; false (and one difference) when not. */
    private boolean sameTokens(String where, TokenWindow w, JsonObject g) {
        long[] ids = longs(g.getAsJsonArray("input_ids"));
        int first = firstDiff(w.inputIds(), ids);
        if (first >= 0) {
            add(Kind.INPUT_IDS, where + ": input_ids differ at token " + first + " ("
                    + (first < w.length() ? w.inputIds()[first] : "end") + " != golden " + (first < ids.length ? ids[first] : "end") + ")");
            return false;
        }
        if (g.has("type_ids") && (first = firstDiff(w.typeIds(), longs(g.getAsJsonArray("type_ids")))) >= 0) {
            add(Kind.TYPE_IDS, where + ": type_ids differ at token " + first);
            return false;
        }
        JsonArray offs = g.getAsJsonArray("offsets");
        for (int t = 0; t < offs.size(); t++) {
            JsonArray p = offs.get(t).getAsJsonArray();
            if (p.get(0).getAsInt() != w.starts()[t] || p.get(1).getAsInt() != w.ends()[t]) {
                add(Kind.OFFSETS, where + ": offsets differ at token " + t + " ([" + w.starts()[t] + ", " + w.ends()[t]
                        + "] != golden " + p + ")");
                return false;
            }
        }
        first = firstDiff(toLongs(w.specialTokensMask()), longs(g.getAsJsonArray("special_tokens_mask")));
        if (first >= 0) {
            add(Kind.SPECIAL_TOKENS_MASK, where + ": special_tokens_mask differ at token " + first);
            return false;
        }
        tokens += w.length();
        return true;
    }

    private void window(String where, TokenWindow w, float[][] scores, int[] labels, JsonObject g) {
        if (!sameTokens(where, w, g)) {
            return;
        }
        int first = firstDiff(toLongs(labels), longs(g.getAsJsonArray("labels")));
        if (first >= 0) {
            add(Kind.LABELS, where + ": label of token " + first + " is " + labels[first] + ", golden "
                    + g.getAsJsonArray("labels").get(first).getAsInt());
        }
        JsonArray gs = g.getAsJsonArray("scores");
        double worst = 0;
        for (int t = 0; t < gs.size(); t++) {
            JsonArray row = gs.get(t).getAsJsonArray();
            for (int j = 0; j < row.size(); j++) {
                worst = Math.max(worst, absDiff(scores[t][j], row.get(j).getAsDouble()));
            }
        }
        maxScoreDiff = Math.max(maxScoreDiff, worst);
        if (worst > tolerance) {
            add(Kind.SCORES, where + ": scores differ by " + fmt(worst) + " (tolerance " + tolerance + ")");
        }
    }

    /**
     * Compares a text-classification artifact's golden cases with this runtime's results (docs/tasks.md):
     * every window (tokens, then logits and scores) from one run over all windows of the golden texts,
     * and the full ranked labels of each long_text mode the fixtures hold.
     *
     * @param golden the fixtures
     * @param windows the golden texts run with every window and both outputs (logits, scores), in case order
     * @param ranked per long_text mode, the full ranked labels of every golden text ({@code classify(texts, 0, mode)})
     * @param tolerance value tolerance
     * @return the comparison (never throws on a difference)
     */
    public static Comparison classification(Golden golden, List<TextOutputs> windows,
                                            java.util.Map<LongText, List<List<LabelScore>>> ranked, double tolerance) {
        Comparison r = new Comparison(tolerance);
        List<Golden.Case> cases = golden.cases();
        checkSize(windows.size(), cases.size());
        for (int c = 0; c < cases.size(); c++) {
            Golden.Case gc = cases.get(c);
            r.cases++;
            if (!r.windowOutputs(gc.id(), windows.get(c), gc.windows())) {
                continue;
            }
            for (LongText mode : LongText.values()) {
                JsonArray want = gc.classification(mode.wireName());
                if (want != null) {
                    List<List<LabelScore>> got = ranked.get(mode);
                    if (got == null) {
                        throw new IllegalArgumentException("no " + mode + " results for the golden " + mode + " rankings");
                    }
                    checkSize(got.size(), cases.size());
                    r.ranked(gc.id() + " classification[" + mode.wireName() + "]", got.get(c), want);
                }
            }
        }
        return r;
    }

    /**
     * Compares a feature-extraction artifact's golden cases with this runtime's results: the first
     * window's tokens and the embedding ({@code embed(texts)} over all golden texts).
     *
     * @param golden the fixtures
     * @param outputs the golden texts run (first windows, {@code embeddings}), in case order
     * @param embeddings the embedding of every golden text, in case order
     * @param tolerance value tolerance
     * @return the comparison (never throws on a difference)
     */
    public static Comparison embeddings(Golden golden, List<TextOutputs> outputs, List<float[]> embeddings, double tolerance) {
        Comparison r = new Comparison(tolerance);
        List<Golden.Case> cases = golden.cases();
        checkSize(outputs.size(), cases.size());
        checkSize(embeddings.size(), cases.size());
        for (int c = 0; c < cases.size(); c++) {
            Golden.Case gc = cases.get(c);
            r.cases++;
            if (!r.windowOutputs(gc.id(), outputs.get(c), gc.windows())) {
                continue;
            }
            if (gc.embedding() != null) {
                r.embeddings++;
                r.values(gc.id() + " embedding", Kind.EMBEDDING, embeddings.get(c), gc.embedding());
            }
        }
        return r;
    }

    private static void checkSize(int got, int cases) {
        if (got != cases) {
            throw new IllegalArgumentException(got + " results for " + cases + " golden cases");
        }
    }

    /**
     * Compares the windows that ran for a text (tokens identical, then every output the golden
     * windows hold: {@code scores}, {@code logits}, within the tolerance) with golden windows.
     *
     * @param where the case, for messages
     * @param got the text's windows and outputs
     * @param golden golden window objects
     * @return false when the window counts differ (nothing else compared)
     */
    public boolean windowOutputs(String where, TextOutputs got, JsonArray golden) {
        if (golden.size() != got.windows().size()) {
            add(Kind.WINDOWS, where + ": " + got.windows().size() + " windows, golden has " + golden.size());
            return false;
        }
        for (int w = 0; w < golden.size(); w++) {
            JsonObject g = golden.get(w).getAsJsonObject();
            String at = where + " window " + w;
            if (!sameTokens(at, got.windows().get(w), g)) {
                continue;
            }
            if (g.has("scores")) {
                values(at + ": scores", Kind.SCORES, got.output(w, "scores"), g.getAsJsonArray("scores"));
            }
            if (g.has("logits")) {
                values(at + ": logits", Kind.LOGITS, got.output(w, "logits"), g.getAsJsonArray("logits"));
            }
        }
        return true;
    }

    /**
     * Compares ranked labels (text classification): the same labels in the same order, each score within
     * the tolerance.
     *
     * @param where for messages
     * @param got the runtime's ranked labels
     * @param want golden ranked labels ({@code [{"label", "score"}, ...]})
     */
    public void ranked(String where, List<LabelScore> got, JsonArray want) {
        rankings++;
        List<String> gl = new ArrayList<>();
        List<String> wl = new ArrayList<>();
        for (LabelScore l : got) {
            gl.add(l.label());
        }
        for (int i = 0; i < want.size(); i++) {
            wl.add(want.get(i).getAsJsonObject().get("label").getAsString());
        }
        if (!gl.equals(wl)) {
            add(Kind.RANKED_LABELS, where + ": labels ranked " + gl + ", golden " + wl);
            return;
        }
        float[] scores = new float[got.size()];
        JsonArray ws = new JsonArray();
        for (int i = 0; i < scores.length; i++) {
            scores[i] = got.get(i).score();
            ws.add(want.get(i).getAsJsonObject().get("score"));
        }
        values(where + ": scores", Kind.RANKED_SCORES, scores, ws);
    }

    /**
     * Compares float32 values with golden ones (JSON doubles): same count, every one within the
     * tolerance; counts the values and the bit-identical ones.
     *
     * @param where for messages
     * @param kind the kind of difference to report
     * @param got the runtime's values
     * @param want golden values
     */
    public void values(String where, Kind kind, float[] got, JsonArray want) {
        if (got.length != want.size()) {
            add(kind, where + ": " + got.length + " values, golden has " + want.size());
            return;
        }
        double worst = 0;
        for (int i = 0; i < got.length; i++) {
            double w = want.get(i).getAsDouble();
            values++;
            if ((double) got[i] == w || (Float.isNaN(got[i]) && Double.isNaN(w))) {
                identicalValues++;
            }
            worst = Math.max(worst, absDiff(got[i], w));
        }
        maxScoreDiff = Math.max(maxScoreDiff, worst);
        if (!(worst <= tolerance)) {
            add(kind, where + " differ by " + fmt(worst) + " (tolerance " + tolerance + ")");
        }
    }

    /**
     * Compares entities with golden ones.
     *
     * @param where for messages
     * @param got the runtime's entities
     * @param want golden entities (the pipeline's JSON form)
     */
    public void entities(String where, List<Entity> got, JsonArray want) {
        entities(where, toJson(got), want);
    }

    /**
     * Compares two entity lists in the pipeline's JSON form ({@code entity_group} or {@code entity},
     * score, word, start, end, and {@code index} for token entities): per entity the first differing
     * field, then the next entity.
     *
     * @param where for messages
     * @param got entities under test
     * @param want expected entities
     */
    public void entities(String where, JsonArray got, JsonArray want) {
        entities += want.size();
        if (got.size() != want.size()) {
            add(Kind.ENTITY_COUNT, where + ": " + got.size() + " entities, golden has " + want.size());
            return;
        }
        for (int j = 0; j < want.size(); j++) {
            JsonObject w = want.get(j).getAsJsonObject();
            JsonObject g = got.get(j).getAsJsonObject();
            String wKey = w.has("entity_group") ? "entity_group" : "entity";
            String gKey = g.has("entity_group") ? "entity_group" : "entity";
            String at = where + "[" + j + "].";
            if (!wKey.equals(gKey)) {
                add(Kind.ENTITY_KIND, at + "kind (" + gKey + ") != golden " + wKey);
            } else if (!str(g, gKey).equals(str(w, wKey))) {
                add(Kind.ENTITY_LABEL, at + wKey + ": '" + str(g, gKey) + "' != golden '" + str(w, wKey) + "'");
            } else if (g.get("start").getAsInt() != w.get("start").getAsInt()) {
                add(Kind.ENTITY_START, at + "start: " + g.get("start") + " != golden " + w.get("start"));
            } else if (g.get("end").getAsInt() != w.get("end").getAsInt()) {
                add(Kind.ENTITY_END, at + "end: " + g.get("end") + " != golden " + w.get("end"));
            } else if (!str(g, "word").equals(str(w, "word"))) {
                add(Kind.ENTITY_WORD, at + "word: '" + str(g, "word") + "' != golden '" + str(w, "word") + "'");
            } else if (w.has("index") && (!g.has("index") || g.get("index").getAsInt() != w.get("index").getAsInt())) {
                add(Kind.ENTITY_INDEX, at + "index: " + (g.has("index") ? g.get("index") : "none") + " != golden " + w.get("index"));
            } else {
                double gs = g.get("score").getAsDouble();
                double ws = w.get("score").getAsDouble();
                double d = absDiff(gs, ws);
                maxScoreDiff = Math.max(maxScoreDiff, d);
                if (gs == ws) {
                    identicalScores++;
                }
                if (!(d <= tolerance)) {
                    add(Kind.ENTITY_SCORE, at + "score: " + gs + " differs from golden " + ws + " by " + fmt(d));
                }
            }
        }
    }

    /**
     * Entities in the pipeline's JSON form: {@code entity} (with {@code index}) or {@code
     * entity_group}, score, word, start, end (code points).
     *
     * @param es entities
     * @return a JSON array
     */
    public static JsonArray toJson(List<Entity> es) {
        JsonArray a = new JsonArray();
        for (Entity e : es) {
            JsonObject o = new JsonObject();
            o.addProperty(e.isGroup() ? "entity_group" : "entity", e.label());
            o.addProperty("score", e.score());
            if (!e.isGroup()) {
                o.addProperty("index", e.index().getAsInt());
            }
            o.addProperty("word", e.word());
            o.addProperty("start", e.start());
            o.addProperty("end", e.end());
            a.add(o);
        }
        return a;
    }

    private void add(Kind kind, String message) {
        differences.add(Objects.requireNonNull(message));
        kinds.add(kind);
    }

    /** @return true when nothing differs */
    public boolean ok() {
        return differences.isEmpty();
    }

    /** @return every difference, where and how (e.g. {@code "news-01 entities[first][0].word: 'a' != golden 'b'"}) */
    public List<String> differences() {
        return Collections.unmodifiableList(differences);
    }

    /** @return the kinds of difference seen */
    public Set<Kind> kinds() {
        return Collections.unmodifiableSet(kinds);
    }

    /** @return cases compared */
    public int cases() {
        return cases;
    }

    /** @return tokens compared */
    public int tokens() {
        return tokens;
    }

    /** @return expected entities compared */
    public int entities() {
        return entities;
    }

    /** @return entities whose score was bit-identical to the expected one */
    public int identicalScores() {
        return identicalScores;
    }

    /** @return output values compared (text classification's logits, scores and ranked scores; embedding values) */
    public int values() {
        return values;
    }

    /** @return of {@link #values()}, those bit-identical to the golden ones */
    public int identicalValues() {
        return identicalValues;
    }

    /** @return ranked label lists compared (text classification) */
    public int rankings() {
        return rankings;
    }

    /** @return embeddings compared (feature extraction) */
    public int embeddings() {
        return embeddings;
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
        String what = cases + " cases, " + tokens + " tokens, " + entities + " entities";
        if (rankings > 0 || embeddings > 0 || values > 0) {
            what = cases + " cases, " + tokens + " tokens, " + (rankings > 0 ? rankings + " rankings, " : "")
                    + (embeddings > 0 ? embeddings + " embeddings, " : "") + values + " values (" + identicalValues
                    + " bit-identical)";
        }
        return status + ": " + what + " compared; worst score difference " + fmt(maxScoreDiff) + " (tolerance " + tolerance + ")";
    }

    private static String str(JsonObject o, String key) {
        return o.get(key).getAsString();
    }

    private static double absDiff(double a, double b) {
        double d = Math.abs(a - b);
        return Double.isNaN(d) ? Double.POSITIVE_INFINITY : d;
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
}
