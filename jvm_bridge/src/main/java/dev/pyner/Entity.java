package dev.pyner;

import java.util.Objects;
import java.util.OptionalInt;

/**
 * One recognized entity, as transformers' pipeline reports it.
 *
 * <p>{@link #start()}/{@link #end()} are Unicode code point indices, exactly as in Python; use
 * {@link #startUtf16()}/{@link #endUtf16()} with {@link String#substring(int, int)} (they differ
 * from the code point indices after any character outside the Basic Multilingual Plane, such as
 * emoji). {@link #index()} is present only for {@link AggregationStrategy#NONE}: the token's
 * position inside its window. Immutable.
 */
public final class Entity {

    private final String label;
    private final double score;
    private final String word;
    private final int start;
    private final int end;
    private final int startUtf16;
    private final int endUtf16;
    private final int index;

    /**
     * Creates an entity.
     *
     * @param label the label ({@code entity} for NONE, {@code entity_group} otherwise)
     * @param score the score (a float32 probability, or a float64 mean for groups)
     * @param word the word as the tokenizer's decoder builds it
     * @param start start, code points
     * @param end end (exclusive), code points
     * @param startUtf16 start, UTF-16 units
     * @param endUtf16 end (exclusive), UTF-16 units
     * @param index token index inside its window, or -1 for grouped entities
     */
    public Entity(String label, double score, String word, int start, int end, int startUtf16, int endUtf16, int index) {
        this.label = Objects.requireNonNull(label, "label");
        this.score = score;
        this.word = Objects.requireNonNull(word, "word");
        this.start = start;
        this.end = end;
        this.startUtf16 = startUtf16;
        this.endUtf16 = endUtf16;
        this.index = index;
    }

    /** @return the label: Python's {@code entity} (NONE) or {@code entity_group} (other strategies) */
    public String label() {
        return label;
    }

    /** @return the score, identical to Python's (float32 token scores widened exactly; float64 means) */
    public double score() {
        return score;
    }

    /** @return the word, built by the tokenizer's decoder exactly as the pipeline builds it */
    public String word() {
        return word;
    }

    /** @return the start offset in Unicode code points (Python string index) */
    public int start() {
        return start;
    }

    /** @return the end offset (exclusive) in Unicode code points (Python string index) */
    public int end() {
        return end;
    }

    /** @return the start offset in UTF-16 code units, for {@link String#substring(int, int)} */
    public int startUtf16() {
        return startUtf16;
    }

    /** @return the end offset (exclusive) in UTF-16 code units, for {@link String#substring(int, int)} */
    public int endUtf16() {
        return endUtf16;
    }

    /** @return the token index inside its window for {@link AggregationStrategy#NONE}, else empty */
    public OptionalInt index() {
        return index < 0 ? OptionalInt.empty() : OptionalInt.of(index);
    }

    /** @return true for grouped entities (Python key {@code entity_group}), false for NONE tokens */
    public boolean isGroup() {
        return index < 0;
    }

    @Override
    public boolean equals(Object o) {
        if (this == o) {
            return true;
        }
        if (!(o instanceof Entity)) {
            return false;
        }
        Entity e = (Entity) o;
        return Double.compare(score, e.score) == 0 && start == e.start && end == e.end
                && startUtf16 == e.startUtf16 && endUtf16 == e.endUtf16 && index == e.index
                && label.equals(e.label) && word.equals(e.word);
    }

    @Override
    public int hashCode() {
        return Objects.hash(label, score, word, start, end, index);
    }

    @Override
    public String toString() {
        return "Entity{" + (isGroup() ? "entity_group=" : "entity=") + label + ", score=" + score
                + ", word='" + word + "', start=" + start + ", end=" + end
                + (isGroup() ? "" : ", index=" + index) + "}";
    }
}
