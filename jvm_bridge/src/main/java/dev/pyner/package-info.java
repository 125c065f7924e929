/**
 * pyner on the JVM: load a pyner artifact folder and recognize entities exactly as the Python
 * runtime (and transformers' {@code TokenClassificationPipeline}) does.
 *
 * <pre>{@code
 * try (PynerModel model = PynerModel.builder().setArtifact(Paths.get("artifacts/demo")).optThreads(2).build()) {
 *     List<List<Entity>> entities = model.predict(List.of("Angela Merkel visited Paris."));
 * }
 * }</pre>
 *
 * <p>Public API: {@link dev.pyner.PynerModel}, {@link dev.pyner.Entity}, {@link
 * dev.pyner.AggregationStrategy}, {@link dev.pyner.ScoredText}, {@link dev.pyner.PynerException}
 * (checked, loading) and {@link dev.pyner.PynerInferenceException} (unchecked, inference). The
 * sub-packages hold the pieces: {@code artifact} (manifest, checksums, golden fixtures), {@code
 * text} (DJL tokenizer windows, token decoders), {@code decode} (entities), {@code runtime}
 * (batches, ONNX Runtime), {@code djl} (a DJL translator) and {@code bridge} (the pyjnius entry
 * point used by {@code pyner.jvm}).
 */
package dev.pyner;
