package pyner.sample

import java.nio.file.{Path, Paths}

import scala.util.Using

import ai.djl.huggingface.translator.TokenClassificationTranslatorFactory
import ai.djl.modality.nlp.translator.NamedEntity
import ai.djl.repository.zoo.Criteria

import dev.pyner.AggregationStrategy

/** Plain DJL: the artifact folder through DJL's own TokenClassificationTranslatorFactory, zero
  * pyner code. `serving.properties` in the folder sets the engine, the inputs and `softmax=false`
  * (the graph's first output is already a softmax). Printed next to pyner's result.
  *
  * What to expect: per token (aggregation "none") DJL and pyner agree, since both run the same
  * graph on the same tokens. Grouped entities can differ: DJL decides sub-words by a whitespace
  * heuristic, where the pipeline (and pyner) use the tokenizer's continuing-subword prefix; DJL also
  * truncates long texts where pyner splits them into overlapping windows.
  */
object PlainDjl {

  /** DJL's result for each text with the given strategy (DJL's names: none, simple, first, average, max). */
  def recognize(artifact: Path, texts: Seq[String], aggregation: String = "simple"): Seq[Seq[Ent]] = {
    Cli.requireArtifact(artifact)
    // START plain-djl
    val criteria = Criteria.builder()
      .setTypes(classOf[String], classOf[Array[NamedEntity]])
      .optModelPath(artifact)                    // the artifact folder; serving.properties is read from it
      .optEngine("OnnxRuntime")
      .optTranslatorFactory(new TokenClassificationTranslatorFactory())
      .optArgument("aggregation_strategy", aggregation)
      .build()
    Using.Manager { use =>
      val model = use(LargeStack(criteria.loadModel())) // see LargeStack: ONNX Runtime needs stack to load
      val predictor = use(model.newPredictor())
      texts.map(text => predictor.predict(text).toSeq.map(toEnt))
    }.get
    // END plain-djl
  }

  private def spans(es: Seq[Ent]) = es.map(e => (e.label, e.start, e.end))

  private def toEnt(n: NamedEntity): Ent = Ent(n.getEntity, n.getScore.toDouble, n.getWord, n.getStart, n.getEnd)

  def main(args: Array[String]): Unit = sys.exit(Cli.execute("PlainDjl") {
    if (args.isEmpty) throw SampleError.usage("usage: PlainDjl ARTIFACT_DIR [TEXT ...]")
    val artifact = Paths.get(args(0))
    val texts = if (args.length > 1) args.toSeq.tail else InProcess.NewsSentences
    val djl = recognize(artifact, texts)
    val pyner = InProcess.recognize(artifact, texts, AggregationStrategy.SIMPLE)
    for (((text, d), p) <- texts.zip(djl).zip(pyner)) {
      println(text)
      val same = spans(d) == spans(p)
      println(s"  plain DJL (${d.size} entities)" + (if (same) ", same spans and labels as pyner" else ", differs from pyner:"))
      d.foreach(e => println("    " + Ent.show(e)))
      if (!same) {
        println(s"  pyner (${p.size} entities)")
        p.foreach(e => println("    " + Ent.show(e)))
      }
    }
  })
}
