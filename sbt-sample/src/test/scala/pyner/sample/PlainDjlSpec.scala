package pyner.sample

import org.scalatest.funsuite.AnyFunSuite

import dev.pyner.AggregationStrategy
import TestSupport._

/** Plain DJL (zero pyner code) against pyner: per token they must agree, because both run the same
  * graph on the same tokens. Grouped entities may differ (DJL's sub-word heuristic); the test
  * counts such differences rather than hiding them.
  */
class PlainDjlSpec extends AnyFunSuite {

  // Short texts: DJL truncates at serving.properties' maxLength (32 tokens in the test artifacts),
  // where pyner would open a second window.
  private val texts = Seq(
    "Angela Merkel met Emmanuel Macron in Berlin.",
    "Apple shares rose in Cupertino, California.",
    "The United Nations met in Geneva on Monday.",
    "Lionel Messi scored twice for Inter Miami.",
  )

  for (family <- Seq("bert", "roberta")) test(s"$family: DJL's TokenClassificationTranslatorFactory equals pyner per token (none)") {
    val art = artifact(s"$family-fp32")
    val djl = PlainDjl.recognize(art, texts, "none")
    val pyner = InProcess.recognize(art, texts, AggregationStrategy.NONE, threads = 1)
    val tol = math.max(scoreTolerance(art), 1e-6) // DJL returns float32 scores
    for (((text, d), p) <- texts.zip(djl).zip(pyner)) {
      assert(d.map(e => (e.label, e.start, e.end)) == p.map(e => (e.label, e.start, e.end)), s"'$text'\n DJL   $d\n pyner $p")
      d.zip(p).foreach { case (a, b) => assert(math.abs(a.score - b.score) <= tol, s"'$text': ${a.score} vs ${b.score}") }
    }
    assert(pyner.map(_.size).sum > 0, "no token entities: the comparison would prove nothing")

    val djlSimple = PlainDjl.recognize(art, texts, "simple")
    val pynerSimple = InProcess.recognize(art, texts, AggregationStrategy.SIMPLE, threads = 1)
    val differing = djlSimple.zip(pynerSimple).count { case (d, p) => d.map(e => (e.label, e.start, e.end)) != p.map(e => (e.label, e.start, e.end)) }
    info(s"$family: ${pyner.map(_.size).sum} token entities equal; grouped (simple) spans differ in $differing of ${texts.size} texts")
  }
}
