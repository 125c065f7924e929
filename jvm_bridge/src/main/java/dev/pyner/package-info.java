/**
 * pyner on the JVM: load a pyner artifact folder and recognize entities, classify texts or embed
 * them exactly as the Python runtime (and transformers' pipelines, sentence-transformers) does.
 *
 * <pre>{@code
 * try (PynerModel model = PynerModel.builder().setArtifact(Paths.get("artifacts/demo")).optThreads(2).build()) {
 *     List<List<Entity>> entities = model.predict(List.of("Angela Merkel visited Paris."));
 * }
 * }</pre>
 *
 * <p>An artifact serves one {@link dev.pyner.Task} (docs/tasks.md): token classification ({@link
 * dev.pyner.PynerModel#predict(java.util.List)}), text classification ({@link
 * dev.pyner.PynerModel#classify(java.util.List, int, dev.pyner.LongText)}) or feature extraction
 * ({@link dev.pyner.PynerModel#embed(java.util.List)}).
 *
 * <p>Public API: {@link dev.pyner.PynerModel}, {@link dev.pyner.Task}, {@link dev.pyner.Entity}, {@link
 * dev.pyner.AggregationStrategy}, {@link dev.pyner.ScoredText}, {@link dev.pyner.LabelScore}, {@link
 * dev.pyner.LongText}, {@link dev.pyner.TextOutputs}, {@link dev.pyner.PynerException} (checked,
 * loading), {@link dev.pyner.PynerInferenceException} (unchecked, inference) and {@link
 * dev.pyner.PynerUsageException} (unchecked, another task's output asked for). The
 * sub-packages hold the pieces: {@code artifact} (manifest, checksums, golden fixtures), {@code
 * text} (DJL tokenizer windows, token decoders), {@code decode} (entities), {@code runtime}
 * (batches, ONNX Runtime), {@code djl} (a DJL translator) and {@code bridge} (the pyjnius entry
 * point used by {@code pyner.jvm}).
 */
package dev.pyner;
