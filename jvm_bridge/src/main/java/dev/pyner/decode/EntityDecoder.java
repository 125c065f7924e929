package dev.pyner.decode;

import dev.pyner.AggregationStrategy;
import dev.pyner.Entity;
import dev.pyner.TokenWindow;
import dev.pyner.text.TextIndex;
import dev.pyner.text.TokenDecoder;
import dev.pyner.text.TokenizerInfo;
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

    /**
     * Creates a decoder from an artifact's tokenizer facts.
     *
     * @param labels class names by id (id2label order)
     * @param tokenizer the tokenizer facts (decoder, vocabulary, unknown id, subword prefix)
     */
    public EntityDecoder(List<String> labels, TokenizerInfo tokenizer) {
        this(labels, tokenizer.decoder(), tokenizer.vocabulary(), tokenizer.unkTokenId(), tokenizer.continuingSubwordPrefix());
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
    public List<Entity> decodeText(TextIndex text, List<TokenWindow> windows, List<float[][]> scores,
                                   AggregationStrategy strategy, Collection<String> ignoreLabels) {
        Set<String> ignore = ignoreLabels == null ? DEFAULT_IGNORE_LABELS : Set.copyOf(ignoreLabels);
        List<Entity> entities = new ArrayList<>();
        for (int w = 0; w < windows.size(); w++) {
            entities.addAll(decodeWindow(text, windows.get(w), scores.get(w), strategy, ignore, w));
        }
        if (windows.size() > 1) {
            entities = aggregateOverlappingEntities(entities);
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
    public static List<Entity> aggregateOverlappingEntities(List<Entity> entities) {
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

    /** One token of a window as gather_pre_entities describes it (special tokens are left out). */
    private record PreEntity(String word, float[] scores, int start, int end, int index, boolean isSubword) {}

    /**
     * A token (strategies none/simple) or a word (first/average/max) with its label, before
     * group_entities. {@code tokens} are the word's token strings: aggregate_word's
     * convert_tokens_to_string is deferred to {@link #groupSubEntities} so that words of ignored
     * groups are never decoded (the result is the same).
     */
    private record TokenEntity(int labelId, double score, List<String> tokens, boolean isWord, int start, int end, int index) {}

    /** The pipeline's postprocess for one window: gather_pre_entities, aggregate, the ignore_labels filter. */
    private List<Entity> decodeWindow(TextIndex text, TokenWindow window, float[][] scores, AggregationStrategy strategy,
                                      Set<String> ignore, int index) {
        List<PreEntity> pre = gatherPreEntities(text, window, scores, index);
        if (pre.isEmpty()) {
            return List.of();
        }
        return aggregate(text, pre, strategy, ignore);
    }

    /**
     * gather_pre_entities: per non-special token its word (convert_ids_to_tokens; an unknown token's
     * text instead), scores, offsets, index and is_subword (prefix rule for word-aware tokenizers,
     * else the space heuristic; never for an unknown token).
     */
    private List<PreEntity> gatherPreEntities(TextIndex text, TokenWindow window, float[][] scores, int index) {
        int n = window.length();
        if (scores.length != n) {
            throw new IllegalArgumentException("window " + index + ": " + n + " tokens but " + scores.length + " score rows");
        }
        long[] ids = window.inputIds();
        List<PreEntity> out = new ArrayList<>(n);
        for (int t = 0; t < n; t++) {
            if (window.specialTokensMask()[t] != 0) {
                continue;
            }
            if (scores[t].length != labels.length) {
                throw new IllegalArgumentException("window " + index + ": scores have " + scores[t].length
                        + " classes but there are " + labels.length + " labels");
            }
            int start = window.starts()[t];
            int end = window.ends()[t];
            boolean unk = hasUnk && ids[t] == unkTokenId;
            String word = unk ? text.slice(start, end) : token(ids[t], window.tokens()[t], index);
            out.add(new PreEntity(word, scores[t], start, end, t, !unk && isSubword(text, word, start, end)));
        }
        return out;
    }

    /** aggregate: per token (none, simple) or per word (first, average, max); group_entities unless none. */
    private List<Entity> aggregate(TextIndex text, List<PreEntity> pre, AggregationStrategy strategy, Set<String> ignore) {
        if (strategy != AggregationStrategy.NONE && strategy != AggregationStrategy.SIMPLE) {
            return groupEntities(text, aggregateWords(pre, strategy), ignore);
        }
        List<TokenEntity> tokens = new ArrayList<>(pre.size());
        for (PreEntity p : pre) {
            int label = argmax(p.scores());
            tokens.add(new TokenEntity(label, p.scores()[label], List.of(p.word()), false, p.start(), p.end(), p.index()));
        }
        if (strategy == AggregationStrategy.SIMPLE) {
            return groupEntities(text, tokens, ignore);
        }
        List<Entity> out = new ArrayList<>();
        for (TokenEntity e : tokens) {
            String label = labels[e.labelId()];
            if (!ignore.contains(label)) {
                out.add(new Entity(label, e.score(), e.tokens().get(0), e.start(), e.end(),
                        text.toUtf16(e.start()), text.toUtf16(e.end()), e.index()));
            }
        }
        return out;
    }

    /** aggregate_words: a word is a token followed by its subword tokens. */
    private List<TokenEntity> aggregateWords(List<PreEntity> pre, AggregationStrategy strategy) {
        List<TokenEntity> words = new ArrayList<>();
        int a = 0;
        for (int k = 1; k <= pre.size(); k++) {
            if (k == pre.size() || !pre.get(k).isSubword()) {
                words.add(aggregateWord(pre.subList(a, k), strategy));
                a = k;
            }
        }
        return words;
    }

    /** aggregate_word: the word's label and score by the strategy (first token, max token, mean of scores). */
    private TokenEntity aggregateWord(List<PreEntity> word, AggregationStrategy strategy) {
        float[] scores;
        if (strategy == AggregationStrategy.FIRST) {
            scores = word.get(0).scores();
        } else if (strategy == AggregationStrategy.MAX) {
            PreEntity best = word.get(0);
            float bestMax = rowMax(best.scores());
            for (PreEntity p : word.subList(1, word.size())) {
                float m = rowMax(p.scores());
                if (m > bestMax) { // Python's max(): the first maximum (NaN never wins a comparison)
                    best = p;
                    bestMax = m;
                }
            }
            scores = best.scores();
        } else if (strategy == AggregationStrategy.AVERAGE) {
            scores = mean32Rows(word);
        } else {
            throw new IllegalArgumentException("invalid aggregation strategy for words: " + strategy);
        }
        int label = argmax(scores);
        List<String> tokens = word.stream().map(PreEntity::word).toList();
        return new TokenEntity(label, scores[label], tokens, true, word.get(0).start(), word.get(word.size() - 1).end(), -1);
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
    private boolean isSubword(TextIndex text, String word, int start, int end) {
        int n = text.length();
        if (wordAware) {
            int tokenLen = word.codePointCount(0, word.length());
            int refLen = Math.max(0, Math.min(end, n) - Math.min(start, n));
            return tokenLen != refLen;
        }
        boolean before = isSpace(text, Math.max(0, Math.min(start - 1, n)));
        boolean at = isSpace(text, Math.max(0, Math.min(start, n)));
        return start > 0 && !before && !at;
    }

    private static boolean isSpace(TextIndex text, int i) {
        return i < text.length() && text.codePointAt(i) == 0x20;
    }

    /**
     * group_entities: adjacent entities of the same tag join a group unless one starts with B-;
     * each group through group_sub_entities; then the ignore_labels filter (on group names).
     */
    private List<Entity> groupEntities(TextIndex text, List<TokenEntity> entities, Set<String> ignore) {
        List<Entity> out = new ArrayList<>();
        int a = 0;
        for (int k = 1; k <= entities.size(); k++) {
            if (k == entities.size() || tagId[entities.get(k).labelId()] != tagId[entities.get(k - 1).labelId()]
                    || isB[entities.get(k).labelId()]) {
                if (!ignore.contains(groupName[entities.get(a).labelId()])) {
                    out.add(groupSubEntities(text, entities.subList(a, k)));
                }
                a = k;
            }
        }
        return out;
    }

    /** group_sub_entities: the first label's tag, the float64 mean score, the decoded words, the span. */
    private Entity groupSubEntities(TextIndex text, List<TokenEntity> group) {
        double[] scores = new double[group.size()];
        List<String> words = new ArrayList<>(group.size());
        for (int j = 0; j < group.size(); j++) {
            TokenEntity e = group.get(j);
            scores[j] = e.score();
            words.add(e.isWord() ? decoder.decode(e.tokens()) : e.tokens().get(0));
        }
        int start = group.get(0).start();
        int end = group.get(group.size() - 1).end();
        return new Entity(groupName[group.get(0).labelId()], mean64(scores, 0, scores.length), decoder.decode(words),
                start, end, text.toUtf16(start), text.toUtf16(end), -1);
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
     * Column-wise mean of the tokens' score rows exactly as numpy's {@code np.nanmean(rows, axis=0)} on
     * float32 (the pipeline's {@code average} strategy): float32 sums, sequential over rows, NaNs
     * skipped, then one division computed in float64 and rounded to float32. Its argmax decides the
     * word's label, so it must match the pipeline bit for bit, not only within a tolerance.
     */
    private static float[] mean32Rows(List<PreEntity> rows) {
        int c = rows.get(0).scores().length;
        float[] total = new float[c];
        int[] count = new int[c];
        for (PreEntity r : rows) {
            for (int j = 0; j < c; j++) {
                float v = r.scores()[j];
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
