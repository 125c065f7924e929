package pyner.sample

import scala.concurrent.{Await, ExecutionContext, Future}
import scala.concurrent.duration._
import scala.jdk.CollectionConverters._

import org.scalatest.BeforeAndAfterAll
import org.scalatest.funsuite.AnyFunSuite

import dev.pyner.AggregationStrategy
import TestSupport._

/** The gRPC client against a real `pyner serve` started by this suite on a free loopback port. */
class SidecarSpec extends AnyFunSuite with BeforeAndAfterAll {

  private lazy val art = artifact("bert-fp32")
  private val port = freePort()
  private var started: Sidecar = _

  /** The sidecar, started on first use (the first test starts it itself, late on purpose). */
  private def sidecar: Sidecar = { if (started == null) started = new Sidecar(art, port); started }

  override def afterAll(): Unit = if (started != null) started.close()

  test("a call made before the sidecar is up succeeds by retrying UNAVAILABLE") {
    val client = new NerClient(s"127.0.0.1:$port", deadline = 5.seconds, maxAttempts = 400, maxBackoff = 300.millis)
    try {
      val call = Future(client.recognize(Seq("Angela Merkel met Emmanuel Macron in Berlin.")))(ExecutionContext.global)
      val until = System.nanoTime() + 30.seconds.toNanos
      while (client.retries == 0 && System.nanoTime() < until) Thread.sleep(20)
      assert(client.retries > 0, "the client never saw UNAVAILABLE from the port nothing listens on")
      assert(!call.isCompleted)
      sidecar // now start the server; the pending call must get through once it serves
      val got = Await.result(call, 120.seconds)
      assert(got.size == 1)
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
