/**
 * Text to model windows and back: the artifact's {@code tokenizer.json} through DJL's
 * HuggingFaceTokenizer (truncation at max_length with stride, overflowing windows, code-point
 * offsets), code point to UTF-16 index conversion, and the tokenizer's decoders (transformers'
 * {@code convert_tokens_to_string}) re-implemented exactly as the Rust {@code tokenizers} crate
 * runs them, because DJL only decodes ids, not token strings.
 */
package dev.pyner.text;
