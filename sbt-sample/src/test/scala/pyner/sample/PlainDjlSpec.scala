package pyner.sample

import org.scalatest.funsuite.AnyFunSuite

import scala.jdk.CollectionConverters._

import dev.pyner.{AggregationStrategy, Comparison}
import TestSupport._

/** Plain DJL (zero pyner code) against pyner: per token they must agree, because both run the same
  * graph on the same tokens, and so must `simple` groups (B-/I- grouping needs no sub-word test);
  * words differ only where DJL writes an unknown token's id. `first`/`average`/`max` can differ
  * (DJL's sub-word heuristic): jvm_bridge's DjlPlainTest measures that.
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

  /** DJL writes an unknown token's id ("[UNK]", "<unk>") where the pipeline writes the text it covers. */
  private def unknownToken(word: String) = word.contains("[UNK]") || word.contains("<unk>")

  /** Through the library's comparison: labels, spans and scores equal; words only where DJL wrote an unknown token. */
  private def assertAgrees(where: String, pyner: Seq[Ent], djl: Seq[Ent], tol: Double): Unit = {
    val c = compareEntities(where, pyner, djl, tol)
    assert(c.kinds.asScala.forall(_ == Comparison.Kind.ENTITY_WORD), s"$where: ${c.differences.asScala.mkString("; ")}\n DJL   $djl\n pyner $pyner")
    for ((d, p) <- djl.zip(pyner) if d.word != p.word) assert(unknownToken(d.word), s"$where: DJL word '${d.word}' vs pyner '${p.word}'")
  }

  for (family <- Seq("bert", "roberta")) test(s"$family: DJL's TokenClassificationTranslatorFactory equals pyner per token (none) and per group (simple)") {
    val art = artifact(s"$family-fp32")
    val tol = math.max(scoreTolerance(art), 1e-6) // DJL returns float32 scores (and averages groups in float32)
    for ((strategy, pynerStrategy) <- Seq("none" -> AggregationStrategy.NONE, "simple" -> AggregationStrategy.SIMPLE)) {
      val djl = PlainDjl.recognize(art, texts, strategy)
      val pyner = InProcess.recognize(art, texts, pynerStrategy, threads = 1)
      for (((text, d), p) <- texts.zip(djl).zip(pyner)) assertAgrees(s"$strategy '$text'", p, d, tol)
      assert(pyner.map(_.size).sum > 0, s"no $strategy entities: the comparison would prove nothing")
      info(s"$family $strategy: ${pyner.map(_.size).sum} entities equal")
    }
  }
}
