/**
 * The artifact folder: manifest {@code pyner.json} (format version, checksums of every file) and
 * golden fixtures {@code golden.json}. Mirrors {@code pyner/artifact.py} and {@code pyner/golden.py}.
 */
package dev.pyner.artifact;
