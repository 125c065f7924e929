package dev.pyner;

/**
 * One model window of a text as the tokenizer produced it: the encoding or one of its overflowing
 * encodings (at most max_length tokens, special tokens included). Offsets are Unicode code points,
 * special tokens have (0, 0), as in Python ({@code pyner.runtime.TokenWindow}); no scores (see {@link
 * ScoredText}). The arrays are shared, not copied: do not modify them.
 */
public final class TokenWindow {

    private final long[] inputIds;
    private final long[] typeIds;
    private final int[] starts;
    private final int[] ends;
    private final int[] specialTokensMask;
    private final String[] tokens;

    /**
     * Creates a window (arrays are kept, not copied).
     *
     * @param inputIds token ids
     * @param typeIds token type ids
     * @param starts start offsets, code points
     * @param ends end offsets, code points
     * @param specialTokensMask 1 for special tokens
     * @param tokens the encoding's token strings (a Unigram unknown piece keeps its text here)
     */
    public TokenWindow(long[] inputIds, long[] typeIds, int[] starts, int[] ends, int[] specialTokensMask, String[] tokens) {
        int n = inputIds.length;
        if (typeIds.length != n || starts.length != n || ends.length != n || specialTokensMask.length != n || tokens.length != n) {
            throw new IllegalArgumentException("window arrays disagree on the token count");
        }
        this.inputIds = inputIds;
        this.typeIds = typeIds;
        this.starts = starts;
        this.ends = ends;
        this.specialTokensMask = specialTokensMask;
        this.tokens = tokens;
    }

    /** @return the number of tokens */
    public int length() {
        return inputIds.length;
    }

    /** @return token ids (shared array) */
    public long[] inputIds() {
        return inputIds;
    }

    /** @return token type ids (shared array) */
    public long[] typeIds() {
        return typeIds;
    }

    /** @return start offsets in code points (shared array) */
    public int[] starts() {
        return starts;
    }

    /** @return end offsets in code points (shared array) */
    public int[] ends() {
        return ends;
    }

    /** @return 1 for special tokens, else 0 (shared array) */
    public int[] specialTokensMask() {
        return specialTokensMask;
    }

    /** @return token strings (shared array) */
    public String[] tokens() {
        return tokens;
    }
}
