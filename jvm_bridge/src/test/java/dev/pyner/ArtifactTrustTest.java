package dev.pyner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.pyner.artifact.Manifest;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * What the JVM trusts in an artifact folder: manifest names confined to the folder, a pinned
 * digest (the sha256 of pyner.json's exact bytes), the external-data file listed and checked.
 */
class ArtifactTrustTest {

    static JsonObject manifest(Path artifact) throws Exception {
        return JsonParser.parseString(Files.readString(artifact.resolve("pyner.json"), StandardCharsets.UTF_8)).getAsJsonObject();
    }

    static void writeManifest(Path artifact, JsonObject m) throws Exception {
        Files.writeString(artifact.resolve("pyner.json"), m.toString(), StandardCharsets.UTF_8);
    }

    static String sha256(byte[] b) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(b));
    }

    @ParameterizedTest
    @ValueSource(strings = {"/etc/hostname", "../golden.json", "sub/config.json", "..", ".", ""})
    void aManifestNameOutsideTheFolderIsRefused(String name, @TempDir Path tmp) throws Exception {
        Path copy = BadInputTest.copy(TestArtifacts.get("bert-fp32"), tmp.resolve("a"));
        JsonObject m = manifest(copy);
        JsonObject entry = new JsonObject();
        entry.addProperty("sha256", "0".repeat(64));
        entry.addProperty("bytes", 1);
        m.getAsJsonObject("files").add(name, entry);
        writeManifest(copy, m);
        // Refused even without checksums: the name alone is enough.
        PynerException e = assertThrows(PynerException.class,
                () -> PynerModel.builder().setArtifact(copy).optChecksums(false).optSelfCheck(false).build());
        assertEquals(copy.resolve("pyner.json"), e.file());
        assertTrue(e.getMessage().contains("'" + name + "' is not a plain file name inside the artifact folder"), e.getMessage());
    }

    @Test
    void aSymlinkResolvingOutsideTheFolderIsRefusedNamingTheFile(@TempDir Path tmp) throws Exception {
        Path copy = BadInputTest.copy(TestArtifacts.get("bert-fp32"), tmp.resolve("a"));
        Path outside = tmp.resolve("config-elsewhere.json");
        Files.move(copy.resolve("config.json"), outside);
        Files.createSymbolicLink(copy.resolve("config.json"), outside); // same bytes: only the location is wrong
        PynerException e = assertThrows(PynerException.class, () -> PynerModel.builder().setArtifact(copy).build());
        assertEquals(copy.resolve("config.json"), e.file());
        assertTrue(e.getMessage().contains("outside the artifact folder"), e.getMessage());

        // A symlink that stays inside the folder is fine (as in Python).
        Files.delete(copy.resolve("config.json"));
        Files.move(outside, copy.resolve("config.real"));
        Files.createSymbolicLink(copy.resolve("config.json"), copy.resolve("config.real"));
        PynerModel.builder().setArtifact(copy).optSelfCheck(false).build().close();
    }

    @Test
    void aPinnedDigestAcceptsOnlyThatArtifact(@TempDir Path tmp) throws Exception {
        Path art = TestArtifacts.get("bert-fp32");
        String digest = "sha256:" + sha256(Files.readAllBytes(art.resolve("pyner.json")));
        try (PynerModel m = PynerModel.builder().setArtifact(art).optSelfCheck(false).optExpectDigest(digest.toUpperCase()
                .replace("SHA256:", "sha256:")).build()) {
            assertEquals(digest, m.manifest().digest());
        }
        Path other = TestArtifacts.get("roberta-fp32");
        PynerException e = assertThrows(PynerException.class,
                () -> PynerModel.builder().setArtifact(other).optSelfCheck(false).optExpectDigest(digest).build());
        String otherDigest = "sha256:" + sha256(Files.readAllBytes(other.resolve("pyner.json")));
        assertTrue(e.getMessage().contains(digest) && e.getMessage().contains(otherDigest), e.getMessage());

        // One byte of the manifest changed (here: whitespace, the JSON means the same) is another artifact.
        Path copy = BadInputTest.copy(art, tmp.resolve("a"));
        Files.writeString(copy.resolve("pyner.json"), Files.readString(copy.resolve("pyner.json")) + "\n");
        assertThrows(PynerException.class,
                () -> PynerModel.builder().setArtifact(copy).optSelfCheck(false).optExpectDigest(digest).build());

        // A pin also checks every file, even with optChecksums(false).
        Path tampered = BadInputTest.copy(art, tmp.resolve("b"));
        Files.writeString(tampered.resolve("serving.properties"), "# changed\n", StandardCharsets.UTF_8,
                java.nio.file.StandardOpenOption.APPEND);
        PynerException t = assertThrows(PynerException.class, () -> PynerModel.builder().setArtifact(tampered)
                .optChecksums(false).optSelfCheck(false).optExpectDigest(digest).build());
        assertEquals(tampered.resolve("serving.properties"), t.file());

        IllegalArgumentException bad = assertThrows(IllegalArgumentException.class,
                () -> PynerModel.builder().optExpectDigest("sha256:abc"));
        assertTrue(bad.getMessage().contains("'sha256:abc' is not an artifact digest"), bad.getMessage());
    }

    @Test
    void externalDataMustBeListedInTheManifest(@TempDir Path tmp) throws Exception {
        Path copy = BadInputTest.copy(TestArtifacts.get("bert-fp32"), tmp.resolve("a"));
        JsonObject m = manifest(copy);
        m.addProperty("external_data", "model.onnx.data");
        writeManifest(copy, m);
        PynerException e = assertThrows(PynerException.class,
                () -> PynerModel.builder().setArtifact(copy).optChecksums(false).optSelfCheck(false).build());
        assertEquals(copy.resolve("pyner.json"), e.file());
        assertTrue(e.getMessage().contains("external_data names model.onnx.data but the manifest lists no checksum for it"),
                e.getMessage());

        // Listed but absent: named as missing.
        JsonObject entry = new JsonObject();
        entry.addProperty("sha256", "0".repeat(64));
        entry.addProperty("bytes", 4);
        m.getAsJsonObject("files").add("model.onnx.data", entry);
        writeManifest(copy, m);
        e = assertThrows(PynerException.class, () -> PynerModel.builder().setArtifact(copy).optSelfCheck(false).build());
        assertEquals(copy.resolve("model.onnx.data"), e.file());
        assertTrue(e.getMessage().contains("missing"), e.getMessage());

        // Its name is confined like every other.
        m.addProperty("external_data", "../model.onnx.data");
        writeManifest(copy, m);
        e = assertThrows(PynerException.class, () -> Manifest.read(copy));
        assertTrue(e.getMessage().contains("'../model.onnx.data' is not a plain file name"), e.getMessage());
    }

    /**
     * The unknown token's id, as Python's runtime finds it: the manifest's unk_token_id; without it,
     * unk_token (the manifest's, else the tokenizer model's) looked up in the vocabulary. Both the
     * model and the DJL translator read it through the one parser: with the id removed from the
     * manifest they still write the text an unknown token covers (golden words), not "[UNK]".
     */
    @ParameterizedTest
    @ValueSource(strings = {"bert-fp32", "roberta-fp32", "xlm-roberta-fp32", "deberta-v2-fp32"})
    void theUnknownTokenIdIsLookedUpWhenTheManifestLacksIt(String name, @TempDir Path tmp) throws Exception {
        Path art = TestArtifacts.get(name);
        long want = manifest(art).getAsJsonObject("tokenizer").get("unk_token_id").getAsLong();
        // Without unk_token either, only a tokenizer model that names its unknown token (WordPiece's
        // "unk_token"; byte-level BPE has none, Unigram keeps an unk_id) gives it, as in Python.
        List<List<String>> drops = name.equals("bert-fp32") ? List.of(List.of("unk_token_id"), List.of("unk_token_id", "unk_token"))
                : List.of(List.of("unk_token_id"));
        for (List<String> drop : drops) {
            Path copy = BadInputTest.copy(art, tmp.resolve(name + "-" + drop.size()));
            JsonObject m = manifest(copy);
            drop.forEach(k -> m.getAsJsonObject("tokenizer").remove(k));
            writeManifest(copy, m); // pyner.json is not in its own file list
            assertEquals(want, dev.pyner.text.TokenizerInfo.read(Manifest.read(copy)).unkTokenId(), drop.toString());
            if (name.equals("bert-fp32")) { // golden texts with [UNK] tokens: the words prove the id was found
                try (PynerModel model = PynerModel.builder().setArtifact(copy).build()) { // the self-check passes
                    assertTrue(model.selfCheck().ok());
                }
                dev.pyner.artifact.Golden golden = dev.pyner.artifact.Golden.read(copy);
                Comparison cmp = new Comparison(1e-5);
                try (var zoo = PynerTranslatorTest.criteria(copy, "none").loadModel(); var predictor = zoo.newPredictor()) {
                    List<Entity[]> got = predictor.batchPredict(golden.texts());
                    for (int i = 0; i < got.size(); i++) {
                        cmp.entities(golden.ids().get(i), java.util.Arrays.asList(got.get(i)),
                                golden.cases().get(i).entities("none"));
                    }
                }
                assertTrue(cmp.ok(), String.join("\n", cmp.differences()));
            }
        }
    }
}
