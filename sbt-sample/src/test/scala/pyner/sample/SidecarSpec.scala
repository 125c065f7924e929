package pyner.sample

import scala.concurrent.duration._
import scala.jdk.CollectionConverters._

import org.scalatest.BeforeAndAfterAll
import org.scalatest.funsuite.AnyFunSuite

import dev.pyner.AggregationStrategy
import TestSupport._

/** The gRPC client against a real `pyner serve` started by this suite on a free loopback port. */
class SidecarSpec extends AnyFunSuite with BeforeAndAfterAll {

  private lazy val art = artifact("bert-fp32")
  private var sidecar: Sidecar = _

  override def beforeAll(): Unit = {
    // Not waiting for health here: the first test's call must get through by retrying UNAVAILABLE
    // while the server loads its model.
    sidecar = new Sidecar(art, freePort())
  }

  override def afterAll(): Unit = if (sidecar != null) sidecar.close()

  test("a call made while the sidecar is still starting succeeds by retrying UNAVAILABLE") {
    val client = new NerClient(sidecar.target, deadline = 5.seconds, maxAttempts = 200, maxBackoff = 500.millis)
    try {
      val got = client.recognize(Seq("Angela Merkel met Emmanuel Macron in Berlin."))
      assert(got.size == 1)
      assert(client.retries > 0, "the server was up before the first call: the retry path was not exercised")
      info(s"${client.retries} UNAVAILABLE answers retried before the sidecar served")
    } finally client.close()
    assert(sidecar.alive, sidecar.output)
  }

  test("Recognize round-trips: entities equal the golden fixtures and the in-process library") {
    sidecar.awaitServing()
    val cases = golden(art)
    val tol = scoreTolerance(art)
    val client = new NerClient(sidecar.target)
    try {
      val info = client.modelInfo()
      assert(info.getLabelsList.asScala.toSeq == readJson(art.resolve("pyner.json")).get("labels").elements().asScala.map(_.asText()).toSeq)
      var identical, entities = 0
      for (strategy <- Seq("simple", "first", "none")) {
        val remote = client.recognize(cases.map(_.text), strategy)
        val local = InProcess.recognize(art, cases.map(_.text), AggregationStrategy.fromName(strategy), threads = 1)
        for (((c, r), l) <- cases.zip(remote).zip(local)) {
          identical += assertSameEntities(s"${c.id} $strategy (golden)", c.entities(strategy), r, tol)
          assertSameEntities(s"${c.id} $strategy (in-process)", l, r, tol)
          entities += r.size
        }
      }
      assert(entities > 0)
      this.info(s"parity (sidecar): ${cases.size} texts x 3 strategies, $entities entities equal, $identical with bit-identical scores")
    } finally client.close()
  }

  test("a bad aggregation is INVALID_ARGUMENT, reported at once (no retries) in one line") {
    sidecar.awaitServing()
    val client = new NerClient(sidecar.target, maxAttempts = 5)
    try {
      val e = intercept[SampleError](client.recognize(Seq("text"), "loudest"))
      assert(e.exitCode == 3)
      assert(e.getMessage.startsWith(s"sidecar ${sidecar.target}: Recognize failed: INVALID_ARGUMENT ("), e.getMessage)
      assert(!e.getMessage.contains("attempts"), e.getMessage)
    } finally client.close()
  }

  test("a sidecar that is down fails with one clear line after the retries") {
    val port = freePort() // nothing listens here
    val client = new NerClient(s"127.0.0.1:$port", deadline = 2.seconds, maxAttempts = 3, initialBackoff = 10.millis)
    try {
      val e = intercept[SampleError](client.recognize(Seq("text")))
      assert(e.exitCode == 1)
      val m = e.getMessage
      assert(m.startsWith(s"sidecar 127.0.0.1:$port: Recognize failed after 3 attempts: UNAVAILABLE ("), m)
      assert(m.endsWith(s"(is `pyner serve` running at 127.0.0.1:$port?)"), m)
      assert(!m.contains("\n"))
    } finally client.close()
  }
}
