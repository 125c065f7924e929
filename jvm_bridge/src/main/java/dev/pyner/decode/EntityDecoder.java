package dev.pyner.decode;

import dev.pyner.AggregationStrategy;
import dev.pyner.Entity;
import dev.pyner.Window;
import dev.pyner.text.TextIndex;
import dev.pyner.text.TokenDecoder;
import dev.pyner.text.Vocabulary;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Turns per-token scores of a text's windows into entities, exactly as {@code pyner.decode.Decoder}
 * (and transformers' pipeline) does. Immutable and thread-safe.
 */
public final class EntityDecoder {

    /** The pipeline's default ignore_labels. */
    public static final Set<String> DEFAULT_IGNORE_LABELS = Set.of("O");

    private final String[] labels;
    private final TokenDecoder decoder;
    private final Vocabulary vocabulary;
    private final long unkTokenId;
    private final boolean hasUnk;
    private final boolean wordAware;
    private final int[] tagId;
    private final boolean[] isB;
    private final String[] groupName;

    /**
     * Creates a decoder.
     *
     * @param labels class names by id (id2label order)
     * @param decoder the tokenizer's decoder (transformers' convert_tokens_to_string)
     * @param vocabulary id to token string (convert_ids_to_tokens); null to use the windows' token strings
     * @param unkTokenId the unknown token's id, or null
     * @param continuingSubwordPrefix the tokenizer model's prefix ("##" for WordPiece); when null or
     *     empty the space heuristic decides subwords
     */
    public EntityDecoder(List<String> labels, TokenDecoder decoder, Vocabulary vocabulary, Long unkTokenId,
                         String continuingSubwordPrefix) {
        if (labels.isEmpty()) {
            throw new IllegalArgumentException("EntityDecoder needs at least one label");
        }
        this.labels = labels.toArray(new String[0]);
        this.decoder = decoder;
        this.vocabulary = vocabulary;
        this.hasUnk = unkTokenId != null;
        this.unkTokenId = unkTokenId == null ? 0 : unkTokenId;
        this.wordAware = continuingSubwordPrefix != null && !continuingSubwordPrefix.isEmpty();
        int n = this.labels.length;
        tagId = new int[n];
        isB = new boolean[n];
        groupName = new String[n];
        Map<String, Integer> ids = new HashMap<>();
        for (int i = 0; i < n; i++) {
            String label = this.labels[i];
            String tag;
            if (label.startsWith("B-")) {
                isB[i] = true;
                tag = label.substring(2);
            } else if (label.startsWith("I-")) {
                tag = label.substring(2);
            } else {
                tag = label;
            }
            tagId[i] = ids.computeIfAbsent(tag, k -> ids.size());
            int dash = label.indexOf('-');
            groupName[i] = dash < 0 ? label : label.substring(dash + 1);
        }
    }

    /** @return true when subwords are decided by the continuing-subword prefix, not the space heuristic */
    public boolean wordAware() {
        return wordAware;
    }

    /**
     * Entities of one text.
     *
     * @param text the text, indexed by code points
     * @param windows its windows
     * @param scores per window, float32 probabilities {@code [tokens][labels]}
     * @param strategy the aggregation strategy
     * @param ignoreLabels labels (or group names) to drop after grouping; null for {"O"}
     * @return the entities
     */
    public List<Entity> decodeText(TextIndex text, List<Window> windows, List<float[][]> scores,
                                   AggregationStrategy strategy, Collection<String> ignoreLabels) {
        Set<String> ignore = ignoreLabels == null ? DEFAULT_IGNORE_LABELS : Set.copyOf(ignoreLabels);
        List<Entity> entities = new ArrayList<>();
        for (int w = 0; w < windows.size(); w++) {
            entities.addAll(decodeWindow(text, windows.get(w), scores.get(w), strategy, ignore, w));
        }
        if (windows.size() > 1) {
            entities = mergeOverlapping(entities);
        }
        return entities;
    }

    /**
     * The pipeline's {@code aggregate_overlapping_entities}: stable sort by start; an entity starting
     * inside the kept one replaces it only when longer, or equally long with a strictly higher score.
     *
     * @param entities entities of all windows
     * @return the merged entities
     */
    public static List<Entity> mergeOverlapping(List<Entity> entities) {
        if (entities.isEmpty()) {
            return entities;
        }
        List<Entity> sorted = new ArrayList<>(entities);
        sorted.sort(Comparator.comparingInt(Entity::start)); // List.sort is stable, like Python's sorted
        List<Entity> merged = new ArrayList<>();
        Entity previous = sorted.get(0);
        for (Entity e : sorted) {
            if (previous.start() <= e.start() && e.start() < previous.end()) {
                int length = e.end() - e.start();
                int previousLength = previous.end() - previous.start();
                if (length > previousLength || (length == previousLength && e.score() > previous.score())) {
                    previous = e;
                }
            } else {
                merged.add(previous);
                previous = e;
            }
        }
        merged.add(previous);
        return merged;
    }

    private List<Entity> decodeWindow(TextIndex text, Window window, float[][] scores, AggregationStrategy strategy,
                                      Set<String> ignore, int index) {
        int n = window.length();
        if (scores.length != n) {
            throw new IllegalArgumentException("window " + index + ": " + n + " tokens but " + scores.length + " score rows");
        }
        int[] special = window.specialTokensMask();
        int count = 0;
        for (int t = 0; t < n; t++) {
            if (special[t] == 0) {
                count++;
            }
        }
        if (count == 0) {
            return List.of();
        }
        int[] keep = new int[count];
        for (int t = 0, k = 0; t < n; t++) {
            if (special[t] == 0) {
                keep[k++] = t;
            }
        }
        long[] ids = window.inputIds();
        String[] tokens = window.tokens();
        int[] starts = new int[count];
        int[] ends = new int[count];
        String[] words = new String[count];
        boolean[] isUnk = new boolean[count];
        float[][] probs = new float[count][];
        for (int k = 0; k < count; k++) {
            int t = keep[k];
            starts[k] = window.starts()[t];
            ends[k] = window.ends()[t];
            probs[k] = scores[t];
            if (probs[k].length != labels.length) {
                throw new IllegalArgumentException("window " + index + ": scores have " + probs[k].length
                        + " classes but there are " + labels.length + " labels");
            }
            isUnk[k] = hasUnk && ids[t] == unkTokenId;
            words[k] = isUnk[k] ? text.slice(starts[k], ends[k]) : token(ids[t], tokens[t], index);
        }

        if (strategy == AggregationStrategy.NONE || strategy == AggregationStrategy.SIMPLE) {
            int[] labelIds = new int[count];
            double[] labelScores = new double[count];
            for (int k = 0; k < count; k++) {
                labelIds[k] = argmax(probs[k]);
                labelScores[k] = probs[k][labelIds[k]];
            }
            if (strategy == AggregationStrategy.NONE) {
                List<Entity> out = new ArrayList<>();
                for (int k = 0; k < count; k++) {
                    String label = labels[labelIds[k]];
                    if (ignore.contains(label)) {
                        continue;
                    }
                    out.add(new Entity(label, labelScores[k], words[k], starts[k], ends[k],
                            text.toUtf16(starts[k]), text.toUtf16(ends[k]), keep[k]));
                }
                return out;
            }
            List<List<String>> single = new ArrayList<>(count);
            for (String w : words) {
                single.add(List.of(w));
            }
            return group(text, labelIds, labelScores, single, false, starts, ends, ignore);
        }

        boolean[] isSubword = subwordFlags(text, words, starts, ends);
        List<Integer> bounds = new ArrayList<>();
        bounds.add(0);
        for (int k = 1; k < count; k++) {
            if (!isSubword[k] || isUnk[k]) {
                bounds.add(k);
            }
        }
        bounds.add(count);
        int nw = bounds.size() - 1;
        int[] wLabel = new int[nw];
        double[] wScore = new double[nw];
        List<List<String>> wWord = new ArrayList<>(nw);
        int[] wStart = new int[nw];
        int[] wEnd = new int[nw];
        for (int w = 0; w < nw; w++) {
            int a = bounds.get(w);
            int b = bounds.get(w + 1);
            int label;
            double score;
            if (strategy == AggregationStrategy.FIRST) {
                label = argmax(probs[a]);
                score = probs[a][label];
            } else if (strategy == AggregationStrategy.MAX) {
                int best = a;
                float bestMax = rowMax(probs[a]);
                for (int k = a + 1; k < b; k++) {
                    float m = rowMax(probs[k]);
                    if (m > bestMax) {
                        best = k;
                        bestMax = m;
                    }
                }
                label = argmax(probs[best]);
                score = probs[best][label];
            } else {
                float[] mean = mean32Rows(probs, a, b);
                label = argmax(mean);
                score = mean[label];
            }
            wLabel[w] = label;
            wScore[w] = score;
            List<String> members = new ArrayList<>(b - a);
            for (int k = a; k < b; k++) {
                members.add(words[k]);
            }
            wWord.add(members);
            wStart[w] = starts[a];
            wEnd[w] = ends[b - 1];
        }
        return group(text, wLabel, wScore, wWord, true, wStart, wEnd, ignore);
    }

    /** convert_ids_to_tokens: the vocabulary's string for the id. */
    private String token(long id, String encodingToken, int window) {
        if (vocabulary == null) {
            return encodingToken;
        }
        String t = vocabulary.token(id);
        if (t == null) {
            throw new IllegalArgumentException("window " + window + ": token id " + id + " is not in the tokenizer's vocabulary");
        }
        return t;
    }

    /** gather_pre_entities' is_subword (before the UNK override). */
    private boolean[] subwordFlags(TextIndex text, String[] words, int[] starts, int[] ends) {
        int n = text.length();
        boolean[] out = new boolean[words.length];
        for (int k = 0; k < words.length; k++) {
            if (wordAware) {
                int tokenLen = words[k].codePointCount(0, words[k].length());
                int refLen = Math.max(0, Math.min(ends[k], n) - Math.min(starts[k], n));
                out[k] = tokenLen != refLen;
            } else {
                int s = starts[k];
                boolean before = isSpace(text, Math.max(0, Math.min(s - 1, n)));
                boolean at = isSpace(text, Math.max(0, Math.min(s, n)));
                out[k] = s > 0 && !before && !at;
            }
        }
        return out;
    }

    private static boolean isSpace(TextIndex text, int i) {
        return i < text.length() && text.codePointAt(i) == 0x20;
    }

    /** group_entities + group_sub_entities, then the ignore_labels filter. */
    private List<Entity> group(TextIndex text, int[] labelIds, double[] scores, List<List<String>> words, boolean wordLevel,
                               int[] starts, int[] ends, Set<String> ignore) {
        int n = labelIds.length;
        List<Entity> out = new ArrayList<>();
        if (n == 0) {
            return out;
        }
        int a = 0;
        for (int k = 1; k <= n; k++) {
            boolean opens = k == n || tagId[labelIds[k]] != tagId[labelIds[k - 1]] || isB[labelIds[k]];
            if (!opens) {
                continue;
            }
            String name = groupName[labelIds[a]];
            if (!ignore.contains(name)) {
                List<String> members = new ArrayList<>(k - a);
                for (int j = a; j < k; j++) {
                    List<String> w = words.get(j);
                    members.add(wordLevel ? decoder.decode(w) : w.get(0));
                }
                double score = mean64(scores, a, k);
                out.add(new Entity(name, score, decoder.decode(members), starts[a], ends[k - 1],
                        text.toUtf16(starts[a]), text.toUtf16(ends[k - 1]), -1));
            }
            a = k;
        }
        return out;
    }

    /**
     * Mean in float64: sequential sum in order, NaNs skipped, one division (NaN when nothing is left).
     *
     * @param values values
     * @param from first index
     * @param to end index (exclusive)
     * @return the mean
     */
    public static double mean64(double[] values, int from, int to) {
        double total = 0.0;
        int count = 0;
        for (int i = from; i < to; i++) {
            double v = values[i];
            if (!Double.isNaN(v)) {
                total += v;
                count++;
            }
        }
        return count == 0 ? Double.NaN : total / count;
    }

    /**
     * Column-wise mean of rows [from, to) exactly as numpy's {@code np.nanmean(rows, axis=0)} on
     * float32 (the pipeline's {@code average} strategy): float32 sums, sequential over rows, NaNs
     * skipped, then one division computed in float64 and rounded to float32. Its argmax decides the
     * word's label, so it must match the pipeline bit for bit, not only within a tolerance.
     */
    static float[] mean32Rows(float[][] rows, int from, int to) {
        int c = rows[from].length;
        float[] total = new float[c];
        int[] count = new int[c];
        for (int r = from; r < to; r++) {
            for (int j = 0; j < c; j++) {
                float v = rows[r][j];
                if (!Float.isNaN(v)) {
                    total[j] += v;
                    count[j]++;
                }
            }
        }
        float[] out = new float[c];
        for (int j = 0; j < c; j++) {
            out[j] = (float) ((double) total[j] / (double) count[j]); // 0/0 -> NaN, as numpy
        }
        return out;
    }

    /**
     * numpy argmax: the first maximum; the first NaN if there is one.
     *
     * @param row values
     * @return the index
     */
    public static int argmax(float[] row) {
        int best = 0;
        float bv = row[0];
        if (Float.isNaN(bv)) {
            return 0;
        }
        for (int i = 1; i < row.length; i++) {
            float v = row[i];
            if (Float.isNaN(v)) {
                return i;
            }
            if (v > bv) {
                best = i;
                bv = v;
            }
        }
        return best;
    }

    static int argmax(double[] row) {
        int best = 0;
        double bv = row[0];
        if (Double.isNaN(bv)) {
            return 0;
        }
        for (int i = 1; i < row.length; i++) {
            double v = row[i];
            if (Double.isNaN(v)) {
                return i;
            }
            if (v > bv) {
                best = i;
                bv = v;
            }
        }
        return best;
    }

    /** numpy max of a row: NaN if any element is NaN. */
    static float rowMax(float[] row) {
        float m = row[0];
        for (float v : row) {
            if (Float.isNaN(v)) {
                return Float.NaN;
            }
            if (v > m) {
                m = v;
            }
        }
        return m;
    }
}
