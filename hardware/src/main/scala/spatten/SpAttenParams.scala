package spatten

import chisel3.util.log2Ceil

/** Every size of the accelerator, in one place.
  *
  * The Scala side is the single source of truth: [[Contract.toJson]] writes these values
  * (and the derived ones, [[jsonFields]]) as the `params` of `contract.json` for the Python
  * golden model, memory-image writer and testbenches, which never restate them. Formats and layouts that use them are defined
  * in `hardware/SPEC.md`.
  *
  * @param preset          name of the preset this came from
  * @param maxHeadDim      largest head dimension D a request may use
  * @param maxTokens       largest number of kept tokens N per request (buffer capacity)
  * @param maxHeads        largest number of heads for head importance / TOPK_HEADS
  * @param dotLanes        multipliers in the dot-product array (and in the P x V array)
  * @param numChannels     DRAM channels, each an independent read port
  * @param burstBytes      bytes of one DRAM request (one burst)
  * @param dramAddrBits    width of a DRAM byte address
  * @param topkParallelism comparators of the quick-select top-k engine
  * @param clockMHz        clock the cycle counts are reported at
  * @param maxInflight     outstanding DRAM requests per channel
  * @param maxGroupHeads   most query heads in one grouped ATTEND (ATTEND_GROUP)
  * @param keysPerCycle    most keys (and value rows) the datapath takes a cycle: the
  *                        dot-product array takes `min(keysPerCycle, dotLanes / D')` keys a
  *                        cycle, `D'` the head dimension rounded up to a power of two
  *                        (SPEC.md section 2); the softmax, importance, value top-k and
  *                        P x V paths are sized to keep up with it
  */
case class SpAttenParams(
  preset:          String = "tiny",
  maxHeadDim:      Int = 16,
  maxTokens:       Int = 64,
  maxHeads:        Int = 8,
  dotLanes:        Int = 16,
  numChannels:     Int = 1,
  burstBytes:      Int = 32,
  dramAddrBits:    Int = 32,
  topkParallelism: Int = 4,
  clockMHz:        Int = 1000,
  maxInflight:     Int = 16,
  maxGroupHeads:   Int = 4,
  keysPerCycle:    Int = 2) {

  /** Width of the command and response stream words. */
  val wordBits: Int = 64
  /** Fractional bits of the softmax input t_j (index bits of the exp2 table). */
  val expLutFracBits: Int = 8
  /** Fractional bits of e_j and p_j. */
  val probFracBits: Int = 16
  /** R = floor(2^recipShift / E). */
  val recipShift: Int = 48
  val importanceBits: Int = 32
  val headImportanceBits: Int = 48
  /** Element width of K, V and q containers. */
  val dataBits: Int = 16

  val burstBits:    Int = burstBytes * 8
  val tokenBits:    Int = 16
  val tokenIdxBits: Int = log2Ceil(maxTokens + 1)
  val dimBits:      Int = log2Ceil(maxHeadDim + 1)
  val headIdxBits:  Int = log2Ceil(maxHeads + 1)
  /** Largest plane row in bytes (D = maxHeadDim at 16 bits), rounded to bursts. */
  val maxRowBytes:  Int = ((maxHeadDim * dataBits / 8 + burstBytes - 1) / burstBytes) * burstBytes
  val maxRowBursts: Int = maxRowBytes / burstBytes

  require(maxHeadDim >= 1 && maxHeadDim <= 255, s"maxHeadDim must be in 1..255, got $maxHeadDim")
  require(maxTokens >= 1 && maxTokens <= 65535, s"maxTokens must be in 1..65535, got $maxTokens")
  require(maxHeads >= 1 && maxHeads <= 255, s"maxHeads must be in 1..255, got $maxHeads")
  require(dotLanes >= 1, s"dotLanes must be positive, got $dotLanes")
  require(numChannels >= 1 && Integer.bitCount(numChannels) == 1,
    s"numChannels must be a power of two, got $numChannels")
  require(burstBytes >= 8 && Integer.bitCount(burstBytes) == 1,
    s"burstBytes must be a power of two >= 8, got $burstBytes")
  require(dramAddrBits >= 16 && dramAddrBits <= 48, s"dramAddrBits must be in 16..48, got $dramAddrBits")
  require(topkParallelism >= 1 && Integer.bitCount(topkParallelism) == 1,
    s"topkParallelism must be a power of two, got $topkParallelism")
  require(maxInflight >= 1, s"maxInflight must be positive, got $maxInflight")
  require(maxGroupHeads >= 1 && maxGroupHeads <= 255, s"maxGroupHeads must be in 1..255, got $maxGroupHeads")
  require(keysPerCycle >= 1 && Integer.bitCount(keysPerCycle) == 1 && keysPerCycle <= dotLanes,
    s"keysPerCycle must be a power of two in 1..dotLanes, got $keysPerCycle")

  /** The parameters, primary and derived, by JSON key (SPEC.md section 7), in order. */
  def jsonFields: Seq[(String, Any)] = Seq(
    "preset" -> preset, "maxHeadDim" -> maxHeadDim, "maxTokens" -> maxTokens,
    "maxHeads" -> maxHeads, "dotLanes" -> dotLanes, "numChannels" -> numChannels,
    "burstBytes" -> burstBytes, "dramAddrBits" -> dramAddrBits,
    "topkParallelism" -> topkParallelism, "clockMHz" -> clockMHz,
    "maxInflight" -> maxInflight, "wordBits" -> wordBits,
    "expLutFracBits" -> expLutFracBits, "probFracBits" -> probFracBits,
    "recipShift" -> recipShift, "importanceBits" -> importanceBits,
    "headImportanceBits" -> headImportanceBits, "dataBits" -> dataBits,
    "maxRowBytes" -> maxRowBytes, "maxGroupHeads" -> maxGroupHeads,
    "keysPerCycle" -> keysPerCycle)
}

/** The named presets. Use `SpAttenParams.byName`. */
object SpAttenParams {

  /** Small enough for a 2-core CI machine: every unit test and the main regression. */
  val tiny: SpAttenParams = SpAttenParams()

  /** 1/8 of the paper: the original release's simulation defaults (64 multipliers,
    * 2 HBM2 channels, top-k parallelism 16), sized for 1k-2k-token contexts. */
  val eighth: SpAttenParams = SpAttenParams(
    preset = "eighth", maxHeadDim = 64, maxTokens = 2048, maxHeads = 32, dotLanes = 64,
    numChannels = 2, topkParallelism = 16, maxInflight = 64, maxGroupHeads = 8, keysPerCycle = 2)

  /** The paper's configuration: 512 multipliers, 16 HBM2 channels, 1 GHz; heads of up to
    * 128 (Llama-2/3-8B, Mistral-7B, Qwen-7B) and up to 32,768 kept tokens a request (the
    * buffer sizes this implies: SPEC.md section 7). */
  val paper: SpAttenParams = SpAttenParams(
    preset = "paper", maxHeadDim = 128, maxTokens = 32768, maxHeads = 32, dotLanes = 512,
    numChannels = 16, topkParallelism = 16, maxInflight = 64, maxGroupHeads = 8, keysPerCycle = 8)

  val all: Seq[SpAttenParams] = Seq(tiny, eighth, paper)

  def byName(name: String): SpAttenParams = all.find(_.preset == name).getOrElse(
    throw new IllegalArgumentException(
      s"unknown preset '$name'; known presets: ${all.map(_.preset).mkString(", ")}"))
}
