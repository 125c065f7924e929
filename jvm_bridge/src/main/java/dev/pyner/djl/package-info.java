/**
 * DJL integration: {@link dev.pyner.djl.PynerTranslatorFactory} lets DJL users load a pyner
 * artifact through {@code Criteria} / {@code ZooModel} / {@code Predictor} and get the reference
 * entities (windows with stride, the pipeline's decoding and words) instead of DJL's own
 * TokenClassificationTranslator.
 */
package dev.pyner.djl;
