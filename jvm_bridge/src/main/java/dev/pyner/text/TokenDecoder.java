package dev.pyner.text;

import java.util.List;

/**
 * A tokenizer decoder: token strings to text, exactly as the Rust {@code tokenizers} crate's
 * {@code Decoder} (transformers' fast {@code convert_tokens_to_string}). Implementations are
 * immutable and thread-safe; see {@link TokenDecoders} for the supported types.
 */
public interface TokenDecoder {

    /**
     * One decoding step over all tokens ({@code decode_chain}).
     *
     * @param tokens token strings (not modified)
     * @return the transformed tokens
     */
    List<String> decodeChain(List<String> tokens);

    /**
     * Decodes tokens into one string: {@link #decodeChain} then concatenation.
     *
     * @param tokens token strings
     * @return the text
     */
    default String decode(List<String> tokens) {
        return String.join("", decodeChain(tokens));
    }
}
