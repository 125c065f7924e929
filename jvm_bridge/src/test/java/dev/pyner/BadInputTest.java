package dev.pyner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Bad texts, bad strategies, and missing, tampered or too-new artifacts: clear errors naming the problem. */
class BadInputTest {

    static PynerModel model;

    @BeforeAll
    static void load() throws Exception {
        model = PynerModel.builder().setArtifact(TestArtifacts.get("bert-fp32")).optSelfCheck(false).build();
    }

    @AfterAll
    static void close() {
        model.close();
    }

    @Test
    void nullTextNamesItsIndex() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> model.predict(Arrays.asList("ok", null, "x")));
        assertTrue(e.getMessage().contains("texts[1]"), e.getMessage());
    }

    @Test
    void nullListIsRefused() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> model.predict((List<String>) null));
        assertTrue(e.getMessage().contains("texts is null"), e.getMessage());
    }

    @Test
    @SuppressWarnings({"unchecked", "rawtypes"})
    void nonStringTextNamesItsIndexAndType() {
        List raw = new ArrayList();
        raw.add("fine");
        raw.add(42);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> model.predict((List<String>) raw));
        assertTrue(e.getMessage().contains("texts[1]") && e.getMessage().contains("Integer"), e.getMessage());
    }

    @Test
    void loneSurrogateIsRefusedWithItsPosition() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> model.predict(List.of("fine", "ab\uD83Dcd")));
        assertTrue(e.getMessage().contains("texts[1]") && e.getMessage().contains("index 2"), e.getMessage());
    }

    @Test
    void emptyListEmptyTextAndWhitespaceGiveNoEntities() {
        assertEquals(List.of(), model.predict(List.of()));
        assertEquals(List.of(List.of(), List.of()), model.predict(List.of("", " \t\n ")));
    }

    @Test
    void unknownStrategyListsTheValidOnes() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> AggregationStrategy.fromName("avg"));
        assertEquals("unknown aggregation strategy 'avg'; valid: none, simple, first, average, max", e.getMessage());
        assertEquals(AggregationStrategy.AVERAGE, AggregationStrategy.fromName("AVERAGE"));
        assertThrows(IllegalArgumentException.class, () -> AggregationStrategy.fromName(null));
    }

    @Test
    void closeIsIdempotentAndUseAfterCloseIsRefused() throws Exception {
        PynerModel m = PynerModel.builder().setArtifact(TestArtifacts.get("bert-fp32")).optSelfCheck(false).build();
        m.close();
        m.close();
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> m.predict(List.of("x")));
        assertTrue(e.getMessage().contains("closed"), e.getMessage());
    }

    @Test
    void missingFolderIsNamed(@TempDir Path tmp) {
        Path missing = tmp.resolve("nope");
        PynerException e = assertThrows(PynerException.class, () -> PynerModel.builder().setArtifact(missing).build());
        assertEquals(missing, e.file());
        assertTrue(e.getMessage().contains("not found"), e.getMessage());
    }

    @Test
    void tamperedFileIsNamed(@TempDir Path tmp) throws Exception {
        Path copy = copy(TestArtifacts.get("bert-fp32"), tmp.resolve("a"));
        Path tok = copy.resolve("tokenizer.json");
        byte[] b = Files.readAllBytes(tok);
        b[b.length / 2] ^= 1;
        Files.write(tok, b);
        PynerException e = assertThrows(PynerException.class, () -> PynerModel.builder().setArtifact(copy).build());
        assertEquals(tok, e.file());
        assertTrue(e.getMessage().contains("sha256") && e.getMessage().contains("modified"), e.getMessage());
    }

    @Test
    void truncatedModelIsNamed(@TempDir Path tmp) throws Exception {
        Path copy = copy(TestArtifacts.get("bert-fp32"), tmp.resolve("a"));
        Path onnx = copy.resolve("model.onnx");
        try (var ch = Files.newByteChannel(onnx, StandardOpenOption.WRITE)) {
            ch.truncate(Files.size(onnx) / 2);
        }
        PynerException e = assertThrows(PynerException.class, () -> PynerModel.builder().setArtifact(copy).build());
        assertEquals(onnx, e.file());
        assertTrue(e.getMessage().contains("truncated"), e.getMessage());
    }

    @Test
    void missingFileIsNamed(@TempDir Path tmp) throws Exception {
        Path copy = copy(TestArtifacts.get("bert-fp32"), tmp.resolve("a"));
        Files.delete(copy.resolve("golden.json"));
        PynerException e = assertThrows(PynerException.class, () -> PynerModel.builder().setArtifact(copy).build());
        assertEquals(copy.resolve("golden.json"), e.file());
        assertTrue(e.getMessage().contains("missing"), e.getMessage());
    }

    @Test
    void newerFormatIsRefusedNamingBothVersions(@TempDir Path tmp) throws Exception {
        Path copy = copy(TestArtifacts.get("bert-fp32"), tmp.resolve("a"));
        Path manifest = copy.resolve("pyner.json");
        JsonObject m = JsonParser.parseString(Files.readString(manifest, StandardCharsets.UTF_8)).getAsJsonObject();
        m.addProperty("format_version", 3);
        Files.writeString(manifest, m.toString(), StandardCharsets.UTF_8);
        PynerException e = assertThrows(PynerException.class, () -> PynerModel.builder().setArtifact(copy).build());
        assertEquals(manifest, e.file());
        assertTrue(e.getMessage().contains("version 3 is newer") && e.getMessage().contains("(2)"), e.getMessage());
    }

    @Test
    void aTaskArtifactClaimingFormatVersion1IsRefused(@TempDir Path tmp) throws Exception {
        // A version 1 reader would run it as a token classifier: version 2 is what makes old readers refuse it.
        Path copy = copy(TestArtifacts.get("bert-cls-fp32"), tmp.resolve("a"));
        Path manifest = copy.resolve("pyner.json");
        JsonObject m = JsonParser.parseString(Files.readString(manifest, StandardCharsets.UTF_8)).getAsJsonObject();
        m.addProperty("format_version", 1);
        Files.writeString(manifest, m.toString(), StandardCharsets.UTF_8);
        PynerException e = assertThrows(PynerException.class, () -> PynerModel.builder().setArtifact(copy).build());
        assertTrue(e.getMessage().contains("a text-classification artifact must have format_version 2, not 1"), e.getMessage());
    }

    @Test
    void entitiesOfAClassifierAndLabelsOfAnEncoderAreUsageErrorsNamingTheTask() throws Exception {
        try (PynerModel cls = PynerModel.builder().setArtifact(TestArtifacts.get("bert-cls-fp32")).optSelfCheck(false).build();
             PynerModel emb = PynerModel.builder().setArtifact(TestArtifacts.get("bert-emb-fp32")).optSelfCheck(false).build()) {
            PynerUsageException e = assertThrows(PynerUsageException.class, () -> cls.predict(List.of("Paris")));
            assertEquals(TestArtifacts.get("bert-cls-fp32").toAbsolutePath().normalize()
                    + ": the artifact is a text-classification model: predict() gives entities of a token-classification"
                    + " model; use classify() for its labels", e.getMessage());
            e = assertThrows(PynerUsageException.class, () -> emb.classify(List.of("Paris")));
            assertTrue(e.getMessage().endsWith("the artifact is a feature-extraction model: classify() gives labels of a"
                    + " text-classification model; use embed() for its embedding"), e.getMessage());
            e = assertThrows(PynerUsageException.class, () -> model.embed(List.of("Paris")));
            assertTrue(e.getMessage().endsWith("the artifact is a token-classification model: embed() gives embedding of a"
                    + " feature-extraction model; use predict() for its entities"), e.getMessage());
            // A usage error is an IllegalStateException: the kind pyner.jvm maps to UsageError (exit 2).
            assertTrue(IllegalStateException.class.isInstance(e));
        }
    }

    @Test
    void goldenMismatchIsRefusedOnLoad(@TempDir Path tmp) throws Exception {
        // A golden fixture edited (and re-checksummed) so that it no longer matches what the model computes.
        Path copy = copy(TestArtifacts.get("bert-fp32"), tmp.resolve("a"));
        Path golden = copy.resolve("golden.json");
        JsonObject g = JsonParser.parseString(Files.readString(golden, StandardCharsets.UTF_8)).getAsJsonObject();
        JsonObject first = g.getAsJsonArray("cases").get(0).getAsJsonObject();
        var labels = first.getAsJsonArray("windows").get(0).getAsJsonObject().getAsJsonArray("labels");
        labels.set(1, new com.google.gson.JsonPrimitive((labels.get(1).getAsInt() + 1) % 9));
        Files.writeString(golden, g.toString(), StandardCharsets.UTF_8);
        rechecksum(copy, "golden.json");
        PynerException e = assertThrows(PynerException.class, () -> PynerModel.builder().setArtifact(copy).build());
        assertEquals(golden, e.file());
        assertTrue(e.getMessage().contains("does not reproduce the golden fixtures")
                && e.getMessage().contains(first.get("id").getAsString()), e.getMessage());
        // ... and loads when the self-check is turned off.
        PynerModel.builder().setArtifact(copy).optSelfCheck(false).build().close();
    }

    @Test
    void negativeThreadsAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> PynerModel.builder().optThreads(-1));
    }

    static Path copy(Path src, Path dst) throws IOException {
        Files.createDirectories(dst);
        try (Stream<Path> files = Files.list(src)) {
            for (Path p : (Iterable<Path>) files::iterator) {
                Files.copy(p, dst.resolve(p.getFileName()));
            }
        }
        return dst;
    }

    static void rechecksum(Path artifact, String file) throws Exception {
        Path manifest = artifact.resolve("pyner.json");
        JsonObject m = JsonParser.parseString(Files.readString(manifest, StandardCharsets.UTF_8)).getAsJsonObject();
        JsonObject entry = m.getAsJsonObject("files").getAsJsonObject(file);
        Path p = artifact.resolve(file);
        var md = java.security.MessageDigest.getInstance("SHA-256");
        StringBuilder hex = new StringBuilder();
        for (byte x : md.digest(Files.readAllBytes(p))) {
            hex.append(String.format("%02x", x));
        }
        entry.addProperty("sha256", hex.toString());
        entry.addProperty("bytes", Files.size(p));
        Files.writeString(manifest, m.toString(), StandardCharsets.UTF_8);
    }

    static void deleteTree(Path p) throws IOException {
        try (Stream<Path> s = Files.walk(p)) {
            s.sorted(Comparator.reverseOrder()).forEach(q -> q.toFile().delete());
        }
    }
}
