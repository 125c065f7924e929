package dev.pyner;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * What text classification does with a text longer than one window (docs/tasks.md, Python's {@code
 * long_text}).
 */
public enum LongText {
    /** The first window only (its first max_length tokens): transformers' pipeline with truncation=True. The default. */
    TRUNCATE("truncate"),
    /**
     * Every window (overlapping by stride), their logits averaged and the manifest's function_to_apply
     * applied to the mean; a one-window text gives exactly the {@link #TRUNCATE} result.
     */
    AVERAGE("average");

    private final String wireName;

    LongText(String wireName) {
        this.wireName = wireName;
    }

    /** @return the name Python, the CLI and golden.json use ("truncate", "average") */
    public String wireName() {
        return wireName;
    }

    /**
     * Parses a wire name, case-insensitively.
     *
     * @param name "truncate" or "average"
     * @return the mode
     * @throws IllegalArgumentException naming the valid modes otherwise
     */
    public static LongText fromName(String name) {
        if (name != null) {
            String lower = name.toLowerCase(Locale.ROOT);
            for (LongText m : values()) {
                if (m.wireName.equals(lower)) {
                    return m;
                }
            }
        }
        String valid = Arrays.stream(values()).map(LongText::wireName).collect(Collectors.joining(", "));
        throw new IllegalArgumentException("unknown long_text " + (name == null ? "null" : "'" + name + "'") + "; valid: " + valid
                + " (truncate: the first window, as the pipeline with truncation; average: every window, logits averaged)");
    }

    @Override
    public String toString() {
        return wireName;
    }
}
