package dev.pyner.runtime;

import dev.pyner.TokenWindow;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/** {@code pyner.runtime.plan_batches}, identically, and the padding of one batch. */
public final class Batches {

    /** Python's DEFAULT_BATCH_SIZE. */
    public static final int DEFAULT_BATCH_SIZE = 32;
    /** Python's DEFAULT_MAX_BATCH_TOKENS. */
    public static final int DEFAULT_MAX_BATCH_TOKENS = 2048;
    /** Python's DEFAULT_MAX_PADDING: a batch closes where padding would exceed 5% of its real tokens. */
    public static final double DEFAULT_MAX_PADDING = 0.05;

    private Batches() {}

    /**
     * Groups window indices into batches: longest first (stable), at most {@code batchSize} per
     * batch and at most {@code maxBatchTokens} padded tokens (count x longest); a window longer than
     * the budget runs alone.
     *
     * @param lengths window lengths
     * @param batchSize maximum windows per batch
     * @param maxBatchTokens maximum padded tokens per batch
     * @return batches of indices into {@code lengths}
     */
    public static List<int[]> plan(int[] lengths, int batchSize, int maxBatchTokens) {
        return plan(lengths, batchSize, maxBatchTokens, Double.POSITIVE_INFINITY);
    }

    /**
     * As {@link #plan(int[], int, int)}, and a batch also closes when padding it to its longest
     * window would exceed its real tokens by more than {@code maxPadding} (a fraction), exactly as
     * Python's {@code plan_batches(..., max_padding=...)}.
     *
     * @param lengths window lengths
     * @param batchSize maximum windows per batch
     * @param maxBatchTokens maximum padded tokens per batch
     * @param maxPadding maximum padding as a fraction of the batch's real tokens (infinity: no bound)
     * @return batches of indices into {@code lengths}
     */
    public static List<int[]> plan(int[] lengths, int batchSize, int maxBatchTokens, double maxPadding) {
        Integer[] order = new Integer[lengths.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        Arrays.sort(order, Comparator.comparingInt(i -> -lengths[i])); // stable, as Python's sorted
        List<int[]> batches = new ArrayList<>();
        List<Integer> current = new ArrayList<>();
        int longest = 0;
        long real = 0;
        for (int i : order) {
            int n = lengths[i];
            long padded = (long) (current.size() + 1) * longest;
            if (!current.isEmpty() && (current.size() >= batchSize || padded > maxBatchTokens
                    || (double) padded > (double) (real + n) * (1.0 + maxPadding))) {
                batches.add(toArray(current));
                current.clear();
            }
            if (current.isEmpty()) {
                longest = n;
                real = 0;
            }
            current.add(i);
            real += n;
        }
        if (!current.isEmpty()) {
            batches.add(toArray(current));
        }
        return batches;
    }

    private static int[] toArray(List<Integer> l) {
        int[] a = new int[l.size()];
        for (int i = 0; i < a.length; i++) {
            a[i] = l.get(i);
        }
        return a;
    }

    /**
     * One batch padded to its longest window, row-major (rows x longest): token ids (padded with the
     * pad id), attention mask (1 on real tokens), type ids (0 on padding).
     *
     * @param rows windows in the batch
     * @param longest the longest window's length
     * @param ids token ids
     * @param mask attention mask
     * @param types token type ids
     */
    public record Padded(int rows, int longest, long[] ids, long[] mask, long[] types) {

        /**
         * Pads windows, in the given order, into one batch.
         *
         * @param windows the batch's rows
         * @param padId the padding token id
         * @return the batch
         */
        public static Padded of(List<TokenWindow> windows, long padId) {
            int n = windows.size();
            int longest = windows.stream().mapToInt(TokenWindow::length).max().orElse(0);
            long[] ids = new long[n * longest];
            long[] mask = new long[n * longest];
            long[] types = new long[n * longest];
            Arrays.fill(ids, padId);
            for (int r = 0; r < n; r++) {
                TokenWindow w = windows.get(r);
                System.arraycopy(w.inputIds(), 0, ids, r * longest, w.length());
                Arrays.fill(mask, r * longest, r * longest + w.length(), 1L);
                System.arraycopy(w.typeIds(), 0, types, r * longest, w.length());
            }
            return new Padded(n, longest, ids, mask, types);
        }

        /**
         * Per row its unpadded scores, from the model's row-major (rows, longest, labels) output.
         *
         * @param scores the output
         * @param windows the rows, as given to {@link #of}
         * @param numLabels labels per token
         * @return per row {@code [tokens][labels]}
         */
        public float[][][] unpad(FloatBuffer scores, List<TokenWindow> windows, int numLabels) {
            float[][][] out = new float[rows][][];
            for (int r = 0; r < rows; r++) {
                float[][] tokens = new float[windows.get(r).length()][numLabels];
                for (int t = 0; t < tokens.length; t++) {
                    scores.position((r * longest + t) * numLabels);
                    scores.get(tokens[t]);
                }
                out[r] = tokens;
            }
            return out;
        }
    }
}
