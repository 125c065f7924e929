package dev.pyner;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * How per-token predictions become entities: the strategies of transformers' {@code
 * TokenClassificationPipeline}, with the same wire names as Python ({@code none}, {@code simple},
 * {@code first}, {@code average}, {@code max}).
 */
public enum AggregationStrategy {
    /** One entity per token (label, score, token index); no grouping. */
    NONE("none"),
    /** Per-token argmax, then adjacent tokens of the same type are grouped (B- opens a group). */
    SIMPLE("simple"),
    /** A word takes the label of its first token, then grouping as SIMPLE. */
    FIRST("first"),
    /** A word takes the argmax of its tokens' mean score vector, then grouping. */
    AVERAGE("average"),
    /** A word takes the label of its token with the highest score, then grouping. */
    MAX("max");

    private final String wireName;

    AggregationStrategy(String wireName) {
        this.wireName = wireName;
    }

    /**
     * Returns the name used by Python, the CLI, the sidecar and golden.json.
     *
     * @return the lower-case wire name
     */
    public String wireName() {
        return wireName;
    }

    /**
     * Parses a wire name, case-insensitively (as the pipeline does).
     *
     * @param name a strategy name such as {@code "simple"}
     * @return the strategy
     * @throws IllegalArgumentException naming the valid strategies when {@code name} is unknown
     */
    public static AggregationStrategy fromName(String name) {
        if (name != null) {
            String lower = name.toLowerCase(Locale.ROOT);
            for (AggregationStrategy s : values()) {
                if (s.wireName.equals(lower)) {
                    return s;
                }
            }
        }
        String valid = Arrays.stream(values()).map(AggregationStrategy::wireName).collect(Collectors.joining(", "));
        throw new IllegalArgumentException(
                "unknown aggregation strategy " + (name == null ? "null" : "'" + name + "'") + "; valid: " + valid);
    }

    @Override
    public String toString() {
        return wireName;
    }
}
