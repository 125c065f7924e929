package dev.pyner.runtime;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/** {@code pyner.runtime.plan_batches}, identically. */
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
}
