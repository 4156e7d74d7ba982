import Foundation
import MegrezCore

/// One loaded bundle: feeds MegrezCore's runner-input plan, in order, to our runner wrapper (MegrezRunner.mm).
/// Every call blocks: the chat model runs them on its own serial queue, never on the main thread.
final class MegrezEngine {
    struct Failure: LocalizedError {
        let message: String
        var errorDescription: String? { message }
    }

    /// The answer of one turn: its text (stop markers removed), what the runner emitted last, and the numbers.
    struct Turn {
        let text: String
        let lastPiece: String
        let stats: AnswerStats?
        /// Positions the runner holds after this turn (its stats' num_prompt_tokens plus generated tokens).
        let positions: Int
    }

    let bundle: InstalledBundle
    private let runner: MegrezRunner
    let planner: RunnerPlanner
    /// Text of the stop ids (the runner passes the EOS piece to the callback; it is not part of the answer).
    let stopTexts: [String]

    init(_ bundle: InstalledBundle) throws {
        self.bundle = bundle
        let tokenizer = bundle.dir.appendingPathComponent(bundle.manifest.tokenizer.file)
        let added = try Neutralize.addedTokens(String(contentsOf: tokenizer, encoding: .utf8))
        planner = RunnerPlanner(bundle.manifest.frontEnd, added)
        stopTexts = [Markers.TURN_END, "<|eos|>"].filter { added.contains($0) }
        runner = try MegrezRunner(modelPath: bundle.dir.appendingPathComponent(bundle.manifest.program.file).path,
                                  tokenizerPath: tokenizer.path)
    }

    func stop() { runner.stop() }
    func reset() { runner.reset() }

    /// Prefills every input of `plan` but the last (a text: the generation prompt), then generates from it.
    /// `positionsBefore`: what the runner already holds (0 in a new chat). `onText` gets complete characters only.
    func run(_ plan: RunnerPlan, positionsBefore: Int, maxNewTokens: Int,
             onText: @escaping (String) -> Void) throws -> Turn {
        let maxContext = bundle.manifest.maxContext
        let room = maxContext - positionsBefore - plan.maxTokens
        if room < 1 {
            throw Failure(message: "this message may not fit the remaining context (\(maxContext - positionsBefore) " +
                          "of \(maxContext) positions left): start a new chat or send less")
        }
        guard case .text(let last)? = plan.inputs.last else {
            throw Failure(message: "internal: the plan does not end with the generation prompt")
        }
        var imageMs: Int64 = 0
        var audioMs: Int64 = 0
        for input in plan.inputs.dropLast() {
            let start = DispatchTime.now().uptimeNanoseconds
            switch input {
            case .text(let t):
                try runner.prefillText(t.text)
            case .image(let image):
                try runner.prefillImage(Data(image.pixels.toChw()), width: image.width, height: image.height)
                imageMs += Int64((DispatchTime.now().uptimeNanoseconds - start) / 1_000_000)
            case .audio(let clip):
                let wave = clip.waveform.withUnsafeBufferPointer { Data(buffer: $0) }
                let mel = try runner.melSpectrogram(waveform: wave)
                if mel.frames != clip.info.melFrames {
                    throw Failure(message: "the bundle's audio_preprocessor gave \(mel.frames) mel frames for a clip " +
                                  "of \(clip.info.samples) samples, the SDK plans \(clip.info.melFrames): re-export it")
                }
                try runner.prefillAudio(mel.data, bins: mel.bins, frames: mel.frames)
                audioMs += Int64((DispatchTime.now().uptimeNanoseconds - start) / 1_000_000)
            }
        }
        let buffer = Utf8PieceBuffer()
        var answer = ""
        var lastPiece = ""
        var statsJson: String?
        let sampler = Memory.PeakSampler()
        sampler.start()
        let emit = { (text: String) in
            guard !text.isEmpty else { return }
            answer += text
            onText(text)
        }
        do {
            try runner.generate(text: last.text, maxNewTokens: min(maxNewTokens, room), onPiece: { bytes in
                let piece = [UInt8](bytes)
                lastPiece = String(decoding: piece, as: UTF8.self)
                if self.stopTexts.contains(lastPiece) { return }
                emit(buffer.push(piece))
            }, onStats: { statsJson = $0 })
        } catch {
            _ = sampler.stop()
            throw error
        }
        emit(buffer.flush())
        let peak = sampler.stop()
        let stats = statsJson.flatMap {
            try? AnswerStats.fromRunnerJson($0, imageEncodeMs: imageMs, audioEncodeMs: audioMs, peakMemoryMb: peak)
        }
        // num_prompt_tokens counts every position before the answer (earlier turns too); the first answer token is
        // not in num_generated_tokens and the last emitted one is never fed back.
        let positions = stats.map { Int($0.promptTokens + $0.generatedTokens) } ?? positionsBefore + plan.maxTokens
        return Turn(text: answer, lastPiece: lastPiece, stats: stats, positions: positions)
    }
}
