/**
 * Batches and ONNX Runtime: windows sorted by length into batches under a window count and a
 * padded-token budget (exactly {@code pyner.runtime.plan_batches}, so both runtimes run the same
 * batches and get bit-identical scores), padded to each batch's longest window, run through an ONNX
 * Runtime Java session with the Python runtime's session options, fetching {@code scores} only.
 */
package dev.pyner.runtime;
