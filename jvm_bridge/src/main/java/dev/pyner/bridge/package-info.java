/**
 * The entry point {@code pyner.jvm} (Python, through pyjnius) calls. It only converts types and
 * forwards to {@link dev.pyner.PynerModel}: texts arrive as UTF-8 JSON bytes (pyjnius corrupts
 * characters outside the Basic Multilingual Plane when it converts a Python str to a Java String)
 * and results leave as JSON with the Python runtime's keys.
 */
package dev.pyner.bridge;
