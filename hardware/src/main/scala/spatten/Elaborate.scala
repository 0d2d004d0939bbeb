package spatten

import chisel3.RawModule
import circt.stage.ChiselStage

import java.io.{File, PrintWriter}
import java.nio.file.{Files, StandardCopyOption}

/** Emits SystemVerilog for one or more (top, preset) pairs, plus the hardware contract as JSON.
  *
  * {{{
  * runMain spatten.Elaborate <top>:<preset>:<outDir> [<top>:<preset>:<outDir> ...]
  * }}}
  * The pseudo-top `contract` writes only the hardware contract ([[Contract.toJson]]):
  * `contract:<preset>:<file.json>`, without elaborating hardware.
  * Each output directory receives the split SystemVerilog files, any BlackBox resources,
  * `filelist.f` (the sources in compile order) and `contract.json` (SPEC.md section 7: the
  * parameters of every preset, the opcodes and packet layouts, the controller's state
  * names). Called by `spatten/sim/build.py`, which caches the outputs by source hash;
  * elaboration itself has no side effects, only this entry point writes files.
  */
object Elaborate {

  /** The modules that can be a top, by name. Each unit that has a testbench of its own
    * is listed here. */
  val tops: Map[String, SpAttenParams => RawModule] = Map(
    "DotProductArray" -> (p => new DotProductArray(p)),
    "DotProductArrayLanes3" -> (p => new DotProductArray(p, 3)),
    "KeyCombine" -> (p => new KeyCombine(p)),
    "PlaneUnpacker" -> (p => new PlaneUnpacker(p)),
    "RowFetcher" -> (p => new RowFetcher(p)),
    // Test top: two RowFetchers behind one DramArbiter (pyverif/fetch).
    "FetchPair" -> (p => new FetchPair(p)),
    "SimDramChannel" -> (p => new SimDramChannel(p, 0)),
    "Softmax" -> (p => new Softmax(p)),
    "ImportanceBuffer" -> (p => new ImportanceBuffer(p)),
    "TopKEngine" -> (p => new TopKEngine(p)),
    // The back end's value top-k: beats of keysPerCycle scores in, blocks of keysPerCycle out.
    "ValueTopK" -> (p => new TopKEngine(p, moduleName = "ValueTopK", inLanes = p.keysPerCycle,
      outLanes = p.keysPerCycle)),
    // Head-importance scores (48 bits), capacity maxHeads, all candidates in one row.
    "TopKEngineWide" -> (p => new TopKEngine(p, scoreBits = p.headImportanceBits, capacity = p.maxHeads,
      comparators = math.max(p.topkParallelism, 1 << chisel3.util.log2Ceil(p.maxHeads)),
      moduleName = "TopKEngineWide")),
    "SpAttenCore" -> (p => new SpAttenCore(p)),
    "SpAttenTop" -> (p => new SpAttenTop(p)),
    "ValueAccumulator" -> (p => new ValueAccumulator(p)),
    "ValueAccumulatorLanes3" -> (p => new ValueAccumulator(p, 3)),
    // 2 row lanes of 3 multipliers: several rows a beat and chunked rows together
    "ValueAccumulatorLanes6Rows2" -> (p => new ValueAccumulator(p, 6, 2))
  )

  val firtoolOpts: Array[String] = Array(
    "-disable-all-randomization",
    "-strip-debug-info",
    // Layers (the Verification layer holds every `assert`) are emitted inline, so the
    // simulations check the RTL's own assertions (Verilator runs them with --assert).
    "-default-layer-specialization=enable",
    "--lowering-options=disallowLocalVariables,locationInfoStyle=none"
  )

  def emit(top: String, preset: String, outDir: File): Unit = {
    val params = SpAttenParams.byName(preset)
    val gen = tops.getOrElse(top, throw new IllegalArgumentException(
      s"unknown top '$top'; known tops: ${tops.keys.toSeq.sorted.mkString(", ")}"))
    val tmp = new File(outDir.getPath + ".tmp")
    deleteRecursively(tmp)
    tmp.mkdirs()
    ChiselStage.emitSystemVerilogFile(
      gen(params),
      args = Array("--target-dir", tmp.getPath, "--split-verilog"),
      firtoolOpts = firtoolOpts)
    val svFiles = tmp.listFiles().filter(f => f.isFile && (f.getName.endsWith(".sv") || f.getName.endsWith(".v")))
      .map(_.getName).sorted
    write(new File(tmp, "filelist.f"), svFiles.mkString("", "\n", "\n"))
    write(new File(tmp, "contract.json"), Contract.toJson(params))
    deleteRecursively(outDir)
    Files.move(tmp.toPath, outDir.toPath, StandardCopyOption.ATOMIC_MOVE)
  }

  private def write(f: File, s: String): Unit = {
    val w = new PrintWriter(f)
    try w.write(s) finally w.close()
  }

  /** Writes `s` to `<out>.tmp`, then renames it to `out`. */
  private def writeAtomically(out: File, s: String): Unit = {
    val f = out.getAbsoluteFile
    f.getParentFile.mkdirs()
    val tmp = new File(f.getPath + ".tmp")
    write(tmp, s)
    Files.move(tmp.toPath, f.toPath, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING)
  }

  private def deleteRecursively(f: File): Unit = {
    if (f.isDirectory) f.listFiles().foreach(deleteRecursively)
    if (f.exists()) f.delete()
  }

  def main(args: Array[String]): Unit = {
    require(args.nonEmpty, "usage: Elaborate <top>:<preset>:<outDir> ...")
    args.foreach { job =>
      job.split(":", 3) match {
        case Array("contract", preset, out) =>
          writeAtomically(new File(out), Contract.toJson(SpAttenParams.byName(preset)))
          println(s"[elaborate] contract ($preset) -> $out")
        case Array(top, preset, out) =>
          new File(out).getAbsoluteFile.getParentFile.mkdirs()
          emit(top, preset, new File(out).getAbsoluteFile)
          println(s"[elaborate] $top ($preset) -> $out")
        case _ => throw new IllegalArgumentException(s"bad job '$job', expected <top>:<preset>:<outDir>")
      }
    }
  }
}
