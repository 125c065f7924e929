package dev.pyner.text;

import java.util.ArrayList;
import java.util.List;

/**
 * Code point view of a Java string: Python's {@code len}, slicing and indexing, plus code point to
 * UTF-16 index conversion. Immutable; cheap for text without supplementary characters.
 */
public final class TextIndex {

    private final String text;
    private final int[] codePoints;
    /** UTF-16 index of each code point index (length n + 1); null when the text is all BMP. */
    private final int[] utf16;

    /**
     * Indexes {@code text}.
     *
     * @param text the text
     */
    public TextIndex(String text) {
        this.text = text;
        this.codePoints = text.codePoints().toArray();
        if (codePoints.length == text.length()) {
            utf16 = null;
        } else {
            utf16 = new int[codePoints.length + 1];
            int u = 0;
            for (int i = 0; i < codePoints.length; i++) {
                utf16[i] = u;
                u += Character.charCount(codePoints[i]);
            }
            utf16[codePoints.length] = u;
        }
    }

    /** @return the text */
    public String text() {
        return text;
    }

    /** @return the number of code points (Python {@code len}) */
    public int length() {
        return codePoints.length;
    }

    /**
     * Returns the code point at a code point index.
     *
     * @param i code point index, {@code 0 <= i < length()}
     * @return the code point
     */
    public int codePointAt(int i) {
        return codePoints[i];
    }

    /**
     * Python's {@code text[start:end]} for non-negative indices (clamped to the text).
     *
     * @param start start, code points
     * @param end end, code points
     * @return the slice (empty when end &lt;= start)
     */
    public String slice(int start, int end) {
        int n = codePoints.length;
        int a = Math.max(0, Math.min(start, n));
        int b = Math.max(0, Math.min(end, n));
        if (b <= a) {
            return "";
        }
        return new String(codePoints, a, b - a);
    }

    /**
     * Converts a code point index to a UTF-16 index (clamped to the text).
     *
     * @param cp code point index
     * @return the UTF-16 index
     */
    public int toUtf16(int cp) {
        int c = Math.max(0, Math.min(cp, codePoints.length));
        return utf16 == null ? c : utf16[c];
    }

    /**
     * Validates texts: a list with only String elements and no lone surrogates.
     *
     * @param texts the texts
     * @return the texts as strings
     * @throws IllegalArgumentException naming the first bad index
     */
    public static List<String> checkTexts(List<?> texts) {
        if (texts == null) {
            throw new IllegalArgumentException("texts is null; pass a list of strings");
        }
        List<String> out = new ArrayList<>(texts.size());
        int i = 0;
        for (Object t : texts) {
            if (t == null) {
                throw new IllegalArgumentException("texts[" + i + "] is null, not a String");
            }
            if (!(t instanceof String)) {
                throw new IllegalArgumentException("texts[" + i + "] is " + t.getClass().getName() + ", not a String");
            }
            String s = (String) t;
            int bad = loneSurrogate(s);
            if (bad >= 0) {
                throw new IllegalArgumentException(String.format(
                        "texts[%d] has a lone surrogate U+%04X at UTF-16 index %d; it is not valid Unicode text",
                        i, (int) s.charAt(bad), bad));
            }
            out.add(s);
            i++;
        }
        return out;
    }

    /**
     * Returns the UTF-16 index of the first unpaired surrogate, or -1: such a string cannot be
     * encoded as UTF-8 and so cannot be tokenized the way Python does.
     *
     * @param s a string
     * @return the index of a lone surrogate, or -1
     */
    private static int loneSurrogate(String s) {
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (Character.isHighSurrogate(c)) {
                if (i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) {
                    i++;
                } else {
                    return i;
                }
            } else if (Character.isLowSurrogate(c)) {
                return i;
            }
        }
        return -1;
    }
}
