package pyner.sample

import java.io.{ByteArrayOutputStream, PrintStream}
import java.nio.file.Paths

import org.scalatest.funsuite.AnyFunSuite

import dev.pyner.AggregationStrategy
import TestSupport._

/** The Scala in-process path against two independent oracles: the golden fixtures the Python
  * runtime wrote into the artifact at packaging time, and `pyner predict` run now on the same file.
  */
class InProcessSpec extends AnyFunSuite {

  private val families = Seq("bert", "roberta", "xlm-roberta")

  for (family <- families) test(s"$family: entities equal the artifact's golden fixtures for every strategy") {
    val art = artifact(s"$family-fp32")
    val cases = golden(art)
    val tol = scoreTolerance(art)
    var entities, identical = 0
    for (strategy <- AggregationStrategy.values().toSeq) {
      val got = InProcess.recognize(art, cases.map(_.text), strategy, threads = 1)
      for ((c, ents) <- cases.zip(got)) {
        val expected = c.entities.getOrElse(strategy.wireName, fail(s"golden.json of $art has no '${strategy.wireName}' for ${c.id}"))
        identical += assertSameEntities(s"$family ${c.id} ${strategy.wireName}", expected, ents, tol)
        entities += expected.size
      }
    }
    assert(entities > 0, "the golden fixtures hold no entities: the comparison would prove nothing")
    info(s"parity (golden): ${cases.size} texts x ${AggregationStrategy.values().length} strategies, $entities entities equal, $identical with bit-identical scores")
  }

  for (family <- families; strategy <- Seq("simple", "average")) test(s"$family: entities equal `pyner predict` on the same file ($strategy)") {
    val art = artifact(s"$family-fp32")
    val docs = (golden(art).map(c => c.id -> c.text) ++
      InProcess.NewsSentences.zipWithIndex.map { case (t, i) => s"news-$i" -> t } ++
      wikigoldSentences(40).zipWithIndex.map { case (t, i) => s"wikigold-$i" -> t })
    val input = writeJsonl(tempDir("inprocess").resolve("input.jsonl"), docs)
    val python = pynerPredict(art, input, strategy)
    val scala = InProcess.recognize(art, docs.map(_._2), AggregationStrategy.fromName(strategy), threads = 1)
    assert(python.keySet == docs.map(_._1).toSet)
    val tol = scoreTolerance(art)
    var identical = 0
    for (((id, _), ents) <- docs.zip(scala)) identical += assertSameEntities(s"$family $id", python(id), ents, tol)
    val total = python.values.map(_.size).sum
    assert(total > 0, "pyner predict found no entities: the comparison would prove nothing")
    info(s"parity (pyner predict, $strategy): ${docs.size} texts, $total entities equal, $identical with bit-identical scores")
  }

  test("a missing artifact folder fails with one line naming it (exit 4)") {
    val err = new ByteArrayOutputStream()
    val code = Cli.execute("InProcess", new PrintStream(err, true, "UTF-8")) {
      InProcess.recognize(Paths.get("/nonexistent/demo"), Seq("text"))
    }
    val message = err.toString("UTF-8")
    assert(code == 4)
    assert(message == "InProcess: error: artifact folder not found: /nonexistent/demo (make one with `pyner package`)\n")
  }

  test("a folder that is not an artifact is refused by pyner-jvm with the file named (exit 4)") {
    val dir = tempDir("not-an-artifact")
    java.nio.file.Files.writeString(dir.resolve("pyner.json"), "{\"format\": \"something-else\"}")
    val err = new ByteArrayOutputStream()
    val code = Cli.execute("InProcess", new PrintStream(err, true, "UTF-8"))(InProcess.recognize(dir, Seq("text")))
    assert(code == 4)
    assert(err.toString("UTF-8").contains("pyner.json"), err.toString("UTF-8"))
    assert(err.toString("UTF-8").linesIterator.size == 1)
  }
}
