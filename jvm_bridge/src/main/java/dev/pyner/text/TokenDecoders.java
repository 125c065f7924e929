package dev.pyner.text;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The decoders of {@code tokenizer.json} ("decoder" field), re-implemented from the Rust
 * {@code tokenizers} crate (src/decoders/*.rs, pre_tokenizers/byte_level.rs, metaspace.rs,
 * normalizers/replace.rs): WordPiece, ByteLevel, Metaspace, BPEDecoder, ByteFallback, Fuse, Strip,
 * Replace, CTC and Sequence. Characters are code points, as Rust {@code chars()}; invalid UTF-8 is
 * replaced as Rust's {@code String::from_utf8_lossy} does. A null decoder joins tokens with a space
 * (transformers' fallback).
 */
public final class TokenDecoders {

    private TokenDecoders() {}

    /**
     * Builds the decoder described by a tokenizer.json "decoder" value.
     *
     * @param spec the JSON value (may be null or JSON null)
     * @return the decoder (never null: a missing decoder joins with spaces)
     * @throws IllegalArgumentException for an unknown decoder type or malformed fields
     */
    public static TokenDecoder fromJson(JsonElement spec) {
        if (spec == null || spec.isJsonNull()) {
            return new SpaceJoin();
        }
        JsonObject o = spec.getAsJsonObject();
        String type = o.has("type") ? o.get("type").getAsString() : "";
        switch (type) {
            case "WordPiece":
                return new WordPiece(str(o, "prefix", "##"), bool(o, "cleanup", true));
            case "ByteLevel":
                return new ByteLevel();
            case "Metaspace":
                return metaspace(o);
            case "BPEDecoder":
                return new Bpe(str(o, "suffix", "</w>"));
            case "ByteFallback":
                return new ByteFallback();
            case "Fuse":
                return new Fuse();
            case "Strip":
                return new Strip(str(o, "content", " ").codePointAt(0), o.get("start").getAsInt(), o.get("stop").getAsInt());
            case "Replace":
                return replace(o);
            case "CTC":
                return new Ctc(str(o, "pad_token", "<pad>"), str(o, "word_delimiter_token", "|"), bool(o, "cleanup", true));
            case "Sequence":
                List<TokenDecoder> steps = new ArrayList<>();
                for (JsonElement e : o.getAsJsonArray("decoders")) {
                    steps.add(fromJson(e));
                }
                return new Sequence(steps);
            default:
                throw new IllegalArgumentException("unsupported decoder type '" + type
                        + "' (supported: WordPiece, ByteLevel, Metaspace, BPEDecoder, ByteFallback, Fuse, Strip,"
                        + " Replace, CTC, Sequence)");
        }
    }

    private static TokenDecoder metaspace(JsonObject o) {
        String rep = str(o, "replacement", "\u2581");
        String scheme = str(o, "prepend_scheme", "always");
        if (o.has("add_prefix_space") && !o.get("add_prefix_space").isJsonNull() && !o.get("add_prefix_space").getAsBoolean()) {
            scheme = "never";
        }
        if (!scheme.equals("always") && !scheme.equals("first") && !scheme.equals("never")) {
            throw new IllegalArgumentException("Metaspace prepend_scheme '" + scheme + "' is not always|first|never");
        }
        return new Metaspace(rep.codePointAt(0), !scheme.equals("never"));
    }

    private static TokenDecoder replace(JsonObject o) {
        JsonObject pattern = o.getAsJsonObject("pattern");
        String content = str(o, "content", "");
        if (pattern.has("String")) {
            return new Replace(Pattern.compile(Pattern.quote(pattern.get("String").getAsString())), content);
        }
        if (pattern.has("Regex")) {
            return new Replace(Pattern.compile(pattern.get("Regex").getAsString()), content);
        }
        throw new IllegalArgumentException("Replace decoder pattern is neither String nor Regex: " + pattern);
    }

    private static String str(JsonObject o, String key, String dflt) {
        JsonElement e = o.get(key);
        return e == null || e.isJsonNull() ? dflt : e.getAsString();
    }

    private static boolean bool(JsonObject o, String key, boolean dflt) {
        JsonElement e = o.get(key);
        return e == null || e.isJsonNull() ? dflt : e.getAsBoolean();
    }

    /** transformers' fallback when tokenizer.json has no decoder: {@code " ".join(tokens)}. */
    static final class SpaceJoin implements TokenDecoder {
        @Override
        public List<String> decodeChain(List<String> tokens) {
            return List.of(String.join(" ", tokens));
        }
    }

    /** WordPiece: strip the continuing prefix, else prepend a space (not to the first token); cleanup. */
    static final class WordPiece implements TokenDecoder {
        private final String prefix;
        private final boolean cleanup;

        WordPiece(String prefix, boolean cleanup) {
            this.prefix = prefix;
            this.cleanup = cleanup;
        }

        @Override
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            for (int i = 0; i < tokens.size(); i++) {
                String t = tokens.get(i);
                if (i != 0) {
                    t = t.startsWith(prefix) ? t.substring(prefix.length()) : " " + t;
                }
                out.add(cleanup ? cleanup(t) : t);
            }
            return out;
        }
    }

    /** The WordPiece/CTC cleanup: spaces before punctuation and English contractions. */
    static String cleanup(String s) {
        return s.replace(" .", ".")
                .replace(" ?", "?")
                .replace(" !", "!")
                .replace(" ,", ",")
                .replace(" ' ", "'")
                .replace(" n't", "n't")
                .replace(" 'm", "'m")
                .replace(" do not", " don't")
                .replace(" 's", "'s")
                .replace(" 've", "'ve")
                .replace(" 're", "'re");
    }

    /** GPT-2 byte-level: map each token's chars back to bytes (raw UTF-8 if any char is unmapped). */
    static final class ByteLevel implements TokenDecoder {
        private static final Map<Integer, Byte> CHAR_BYTES = charBytes();

        private static Map<Integer, Byte> charBytes() {
            List<Integer> bs = new ArrayList<>();
            for (int b = '!'; b <= '~'; b++) {
                bs.add(b);
            }
            for (int b = 0xA1; b <= 0xAC; b++) {
                bs.add(b);
            }
            for (int b = 0xAE; b <= 0xFF; b++) {
                bs.add(b);
            }
            List<Integer> cs = new ArrayList<>(bs);
            int n = 0;
            for (int b = 0; b <= 255; b++) {
                if (!bs.contains(b)) {
                    bs.add(b);
                    cs.add(256 + n);
                    n++;
                }
            }
            Map<Integer, Byte> m = new HashMap<>();
            for (int i = 0; i < bs.size(); i++) {
                m.put(cs.get(i), (byte) (int) bs.get(i));
            }
            return Collections.unmodifiableMap(m);
        }

        @Override
        public List<String> decodeChain(List<String> tokens) {
            ByteBuf buf = new ByteBuf();
            for (String t : tokens) {
                int[] cps = t.codePoints().toArray();
                byte[] mapped = new byte[cps.length];
                boolean all = true;
                for (int i = 0; i < cps.length; i++) {
                    Byte b = CHAR_BYTES.get(cps[i]);
                    if (b == null) {
                        all = false;
                        break;
                    }
                    mapped[i] = b;
                }
                buf.add(all ? mapped : t.getBytes(StandardCharsets.UTF_8));
            }
            return List.of(Utf8.decodeLossy(buf.bytes(), buf.size()));
        }
    }

    /** SentencePiece metaspace: the replacement char becomes a space, dropped in the first token when prepending. */
    static final class Metaspace implements TokenDecoder {
        private final int replacement;
        private final boolean prepend;

        Metaspace(int replacement, boolean prepend) {
            this.replacement = replacement;
            this.prepend = prepend;
        }

        @Override
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            for (int i = 0; i < tokens.size(); i++) {
                String t = tokens.get(i);
                StringBuilder sb = new StringBuilder(t.length());
                boolean first = i == 0 && prepend;
                t.codePoints().forEach(c -> {
                    if (c == replacement) {
                        if (!first) {
                            sb.append(' ');
                        }
                    } else {
                        sb.appendCodePoint(c);
                    }
                });
                out.add(sb.toString());
            }
            return out;
        }
    }

    /** Original BPE: the end-of-word suffix becomes a space (nothing on the last token). */
    static final class Bpe implements TokenDecoder {
        private final String suffix;

        Bpe(String suffix) {
            this.suffix = suffix;
        }

        @Override
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            int n = tokens.size() - 1;
            for (int i = 0; i < tokens.size(); i++) {
                out.add(suffix.isEmpty() ? tokens.get(i) : tokens.get(i).replace(suffix, i == n ? "" : " "));
            }
            return out;
        }
    }

    /** Tokens like {@code <0x61>} become bytes; runs that are not valid UTF-8 become one U+FFFD per byte. */
    static final class ByteFallback implements TokenDecoder {
        @Override
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>();
            ByteBuf pending = new ByteBuf();
            for (String t : tokens) {
                int b = byteToken(t);
                if (b >= 0) {
                    pending.add(new byte[] {(byte) b});
                } else {
                    flush(pending, out);
                    out.add(t);
                }
            }
            flush(pending, out);
            return out;
        }

        private static int byteToken(String t) {
            byte[] utf8 = t.getBytes(StandardCharsets.UTF_8);
            if (utf8.length != 6 || !t.startsWith("<0x") || !t.endsWith(">")) {
                return -1;
            }
            String hex = new String(utf8, 3, 2, StandardCharsets.UTF_8);
            if (hex.startsWith("+")) {
                hex = hex.substring(1);
            }
            if (hex.isEmpty() || !hex.chars().allMatch(c -> Character.digit(c, 16) >= 0 && c < 128)) {
                return -1;
            }
            return Integer.parseInt(hex, 16);
        }

        private static void flush(ByteBuf pending, List<String> out) {
            if (pending.size() == 0) {
                return;
            }
            String s = Utf8.decodeStrict(pending.bytes(), pending.size());
            if (s != null) {
                out.add(s);
            } else {
                for (int i = 0; i < pending.size(); i++) {
                    out.add("\uFFFD");
                }
            }
            pending.clear();
        }
    }

    /** Joins all tokens into one. */
    static final class Fuse implements TokenDecoder {
        @Override
        public List<String> decodeChain(List<String> tokens) {
            return List.of(String.join("", tokens));
        }
    }

    /** Strips up to {@code start} leading and {@code stop} trailing {@code content} chars from each token. */
    static final class Strip implements TokenDecoder {
        private final int content;
        private final int start;
        private final int stop;

        Strip(int content, int start, int stop) {
            this.content = content;
            this.start = start;
            this.stop = stop;
        }

        @Override
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            for (String t : tokens) {
                int[] c = t.codePoints().toArray();
                int a = 0;
                for (int i = 0; i < Math.min(start, c.length); i++) {
                    if (c[i] == content) {
                        a = i + 1;
                    } else {
                        break;
                    }
                }
                int b = c.length;
                for (int i = 0; i < stop && c.length - i - 1 >= 0; i++) {
                    int index = c.length - i - 1;
                    if (c[index] == content) {
                        b = index;
                    } else {
                        break;
                    }
                }
                out.add(b > a ? new String(c, a, b - a) : "");
            }
            return out;
        }
    }

    /** Replaces every match of a pattern in each token. */
    static final class Replace implements TokenDecoder {
        private final Pattern pattern;
        private final String content;

        Replace(Pattern pattern, String content) {
            this.pattern = pattern;
            this.content = content;
        }

        @Override
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            for (String t : tokens) {
                out.add(pattern.matcher(t).replaceAll(Matcher.quoteReplacement(content)));
            }
            return out;
        }
    }

    /** CTC: collapse repeats, drop pad tokens, cleanup, word delimiter to space, drop empties. */
    static final class Ctc implements TokenDecoder {
        private final String pad;
        private final String delimiter;
        private final boolean cleanup;

        Ctc(String pad, String delimiter, boolean cleanup) {
            this.pad = pad;
            this.delimiter = delimiter;
            this.cleanup = cleanup;
        }

        @Override
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>();
            String previous = null;
            for (String t : tokens) {
                if (previous != null && previous.equals(t)) {
                    continue;
                }
                previous = t;
                String r = pad.isEmpty() ? t : t.replace(pad, "");
                if (cleanup) {
                    r = cleanup(r);
                    r = delimiter.isEmpty() ? r : r.replace(delimiter, " ");
                }
                if (!r.isEmpty()) {
                    out.add(r);
                }
            }
            return out;
        }
    }

    /** Runs decoders one after the other. */
    static final class Sequence implements TokenDecoder {
        private final List<TokenDecoder> steps;

        Sequence(List<TokenDecoder> steps) {
            this.steps = List.copyOf(steps);
        }

        @Override
        public List<String> decodeChain(List<String> tokens) {
            List<String> t = tokens;
            for (TokenDecoder d : steps) {
                t = d.decodeChain(t);
            }
            return t;
        }
    }

    /** A growable byte array. */
    static final class ByteBuf {
        private byte[] data = new byte[64];
        private int size;

        void add(byte[] b) {
            if (size + b.length > data.length) {
                data = java.util.Arrays.copyOf(data, Math.max(data.length * 2, size + b.length));
            }
            System.arraycopy(b, 0, data, size, b.length);
            size += b.length;
        }

        byte[] bytes() {
            return data;
        }

        int size() {
            return size;
        }

        void clear() {
            size = 0;
        }
    }

    /** UTF-8 decoding as Rust does it. */
    static final class Utf8 {
        private Utf8() {}

        /** Strict decoding; null when the bytes are not valid UTF-8. */
        static String decodeStrict(byte[] b, int n) {
            try {
                return StandardCharsets.UTF_8.newDecoder()
                        .onMalformedInput(CodingErrorAction.REPORT)
                        .onUnmappableCharacter(CodingErrorAction.REPORT)
                        .decode(java.nio.ByteBuffer.wrap(b, 0, n))
                        .toString();
            } catch (CharacterCodingException e) {
                return null;
            }
        }

        /**
         * {@code String::from_utf8_lossy}: every maximal invalid subpart becomes one U+FFFD (the
         * Unicode "substitution of maximal subparts" practice, which Rust follows).
         */
        static String decodeLossy(byte[] b, int n) {
            StringBuilder sb = new StringBuilder(n);
            int i = 0;
            while (i < n) {
                int b0 = b[i] & 0xFF;
                if (b0 < 0x80) {
                    sb.append((char) b0);
                    i++;
                    continue;
                }
                int width;
                int lo = 0x80;
                int hi = 0xBF;
                if (b0 >= 0xC2 && b0 <= 0xDF) {
                    width = 2;
                } else if (b0 == 0xE0) {
                    width = 3;
                    lo = 0xA0;
                } else if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) {
                    width = 3;
                } else if (b0 == 0xED) {
                    width = 3;
                    hi = 0x9F;
                } else if (b0 == 0xF0) {
                    width = 4;
                    lo = 0x90;
                } else if (b0 >= 0xF1 && b0 <= 0xF3) {
                    width = 4;
                } else if (b0 == 0xF4) {
                    width = 4;
                    hi = 0x8F;
                } else {
                    sb.append('\uFFFD');
                    i++;
                    continue;
                }
                int j = i + 1;
                if (j >= n || (b[j] & 0xFF) < lo || (b[j] & 0xFF) > hi) {
                    sb.append('\uFFFD');
                    i = j;
                    continue;
                }
                int cp = b0 & (0xFF >> (width + 1));
                cp = (cp << 6) | (b[j] & 0x3F);
                j++;
                boolean ok = true;
                for (int k = 2; k < width; k++) {
                    if (j >= n || (b[j] & 0xC0) != 0x80) {
                        ok = false;
                        break;
                    }
                    cp = (cp << 6) | (b[j] & 0x3F);
                    j++;
                }
                if (!ok) {
                    sb.append('\uFFFD');
                    i = j;
                    continue;
                }
                sb.appendCodePoint(cp);
                i = j;
            }
            return sb.toString();
        }
    }
}
