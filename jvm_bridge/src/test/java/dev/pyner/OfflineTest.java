package dev.pyner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.inference.Predictor;
import ai.djl.modality.nlp.translator.NamedEntity;
import ai.djl.repository.zoo.Criteria;
import ai.djl.repository.zoo.ZooModel;
import ai.djl.translate.DeferredTranslatorFactory;
import ai.djl.util.Utils;
import ai.onnxruntime.OrtEnvironment;
import dev.pyner.djl.PynerTranslatorFactory;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Proxy;
import java.net.ProxySelector;
import java.net.ServerSocket;
import java.net.SocketAddress;
import java.net.URI;
import java.net.URL;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Nothing tries the network: every connection attempt in this JVM (URLConnection or raw socket)
 * goes through a ProxySelector that records it and points it at a closed local port. A canary
 * proves the recorder sees connections; then loading and predicting through PynerModel, plain DJL
 * and the pyner DJL translator must record nothing.
 */
class OfflineTest {

    static final List<URI> ATTEMPTS = Collections.synchronizedList(new ArrayList<>());
    static ProxySelector previous;
    static int closedPort;

    @BeforeAll
    static void install() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            closedPort = s.getLocalPort(); // closed once this block ends: connections are refused
        }
        previous = ProxySelector.getDefault();
        ProxySelector.setDefault(new ProxySelector() {
            @Override
            public List<Proxy> select(URI uri) {
                ATTEMPTS.add(uri);
                Proxy.Type type = "socket".equals(uri.getScheme()) ? Proxy.Type.SOCKS : Proxy.Type.HTTP;
                return List.of(new Proxy(type, new InetSocketAddress("127.0.0.1", closedPort)));
            }

            @Override
            public void connectFailed(URI uri, SocketAddress sa, IOException ioe) {
                // recorded in select()
            }
        });
    }

    @AfterAll
    static void restore() {
        ProxySelector.setDefault(previous);
    }

    @Test
    void canaryConnectionIsRecorded() {
        ATTEMPTS.clear();
        assertThrows(IOException.class, () -> {
            var c = new URL("http://169.254.169.254/latest/meta-data/instance-id").openConnection();
            c.setConnectTimeout(2000);
            c.connect();
        });
        assertTrue(ATTEMPTS.stream().anyMatch(u -> "169.254.169.254".equals(u.getHost())), ATTEMPTS.toString());
        ATTEMPTS.clear();
    }

    @Test
    void loadingAndPredictingNeverTouchTheNetwork() throws Exception {
        synchronized (ATTEMPTS) {
            ATTEMPTS.clear();
        }
        Path artifact = TestArtifacts.get("roberta-fp32");
        try (PynerModel m = PynerModel.builder().setArtifact(artifact).build()) {
            m.predict(List.of("Angela Merkel visited Paris."));
        }
        assertEquals("true", System.getProperty("OPT_OUT_TRACKING"), "the bridge sets OPT_OUT_TRACKING itself");
        assertTrue(Utils.isOfflineMode(), "DJL offline mode");
        Criteria<String, NamedEntity[]> plain = Criteria.builder()
                .setTypes(String.class, NamedEntity[].class)
                .optModelPath(artifact)
                .optEngine("OnnxRuntime")
                .optTranslatorFactory(new DeferredTranslatorFactory())
                .build();
        try (ZooModel<String, NamedEntity[]> zm = plain.loadModel(); Predictor<String, NamedEntity[]> p = zm.newPredictor()) {
            p.predict("Angela Merkel visited Paris.");
        }
        Criteria<String, Entity[]> ours = Criteria.builder()
                .setTypes(String.class, Entity[].class)
                .optModelPath(artifact)
                .optEngine("OnnxRuntime")
                .optTranslatorFactory(new PynerTranslatorFactory())
                .build();
        try (ZooModel<String, Entity[]> zm = ours.loadModel(); Predictor<String, Entity[]> p = zm.newPredictor()) {
            p.predict("Angela Merkel visited Paris.");
        }
        assertEquals(List.of(), new ArrayList<>(ATTEMPTS), "network connections were attempted");
    }

    @Test
    void onnxRuntimeJavaIsThePinnedVersionSameAsPython() throws Exception {
        // pom.xml overrides onnxruntime-engine's ORT 1.21.1 with 1.29.0, the Python side's version.
        assertEquals("1.29.0", OrtEnvironment.getEnvironment().getVersion());
        try (PynerModel m = PynerModel.builder().setArtifact(TestArtifacts.get("bert-fp32")).optSelfCheck(false).build()) {
            assertEquals(m.manifest().onnxRuntimeVersion(), m.onnxRuntimeVersion());
        }
    }
}
