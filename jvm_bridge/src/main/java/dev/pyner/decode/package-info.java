/**
 * Entity decoding, a line-by-line mirror of {@code pyner/decode.py} (itself transformers'
 * {@code TokenClassificationPipeline.postprocess}; see docs/decoding.md): special tokens dropped,
 * UNK words from the text, the subword rule, word aggregation, B-/I- grouping with float64 means,
 * ignore_labels after grouping, and the overlapping-window merge.
 */
package dev.pyner.decode;
