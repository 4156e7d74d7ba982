import Foundation
import MegrezCore
import SwiftUI

struct ChatLine: Identifiable {
    let id = UUID()
    let fromUser: Bool
    var text: String
    var detail: String = ""
}

/// The chat screen's state. Runtime calls run on one serial queue; the UI is updated on the main actor.
@MainActor
final class ChatModel: ObservableObject {
    @Published var bundles: [InstalledBundle] = []
    @Published var selected: InstalledBundle?
    @Published var lines: [ChatLine] = []
    @Published var status = ""
    @Published var busy = false
    @Published var generating = false
    @Published var recording = false
    @Published var pendingImage: RgbImage?
    @Published var pendingAudio: [Float]?
    @Published var importProgress: Double?

    private let queue = DispatchQueue(label: "dev.megrezmobile.runner", qos: .userInitiated)
    private var engine: MegrezEngine?
    private let recorder = Recorder()
    // The conversation the runner's KV cache holds (core Continuation).
    private var imagesSoFar = 0
    private var audioSoFar = 0
    private var pendingAnswer: String?   // nil: no turn yet
    private var positions = 0

    private static let maxNewTokens = 512

    func refreshBundles() {
        bundles = BundleStore.installed()
        if selected == nil || !bundles.contains(where: { $0 == selected }) {
            if let best = BundleStore.preferred(bundles) { open(best) }
        }
        if bundles.isEmpty {
            status = "No bundle yet: copy a folder made by `megrez-mobile export` into this app with Finder or the " +
                "Files app, or tap Import."
        }
    }

    func importBundle(from url: URL) {
        importProgress = 0
        queue.async {
            do {
                let dir = try BundleStore.importFolder(url) { p in
                    Task { @MainActor in self.importProgress = p }
                }
                Task { @MainActor in
                    self.importProgress = nil
                    self.refreshBundles()
                    if let b = self.bundles.first(where: { $0.dir.lastPathComponent == dir.lastPathComponent }) {
                        self.open(b)
                    }
                }
            } catch {
                Task { @MainActor in
                    self.importProgress = nil
                    self.status = "Import failed: \(error.localizedDescription)"
                }
            }
        }
    }

    func open(_ bundle: InstalledBundle) {
        selected = bundle
        engine = nil
        busy = true
        status = "Verifying \(bundle.name)…"
        queue.async {
            do {
                let warnings = try BundleStore.verify(bundle) { file, fraction in
                    Task { @MainActor in self.status = "Verifying \(file): \(Int(fraction * 100)) %" }
                }
                let engine = try MegrezEngine(bundle)
                Task { @MainActor in
                    self.engine = engine
                    self.newChat()
                    let coreML = bundle.coreMLEncoders.isEmpty ? "" :
                        " · \(bundle.coreMLEncoders.joined(separator: ", ")) on Core ML"
                    self.status = ([("\(bundle.name): \(bundle.manifest.recipeName), context " +
                                     "\(bundle.manifest.maxContext)\(coreML)")] + warnings).joined(separator: "\n")
                    self.busy = false
                }
            } catch {
                Task { @MainActor in
                    self.status = "\(bundle.name) cannot be used: \(error.localizedDescription)"
                    self.busy = false
                }
            }
        }
    }

    func newChat() {
        lines = []
        resetConversation()
    }

    /// The runner forgets the conversation (position 0); the screen keeps what it shows.
    private func resetConversation() {
        if let engine = engine { queue.async { engine.reset() } }
        imagesSoFar = 0
        audioSoFar = 0
        pendingAnswer = nil
        positions = 0
    }

    func attachPhoto(_ data: Data) {
        guard let cfg = selected?.manifest.frontEnd.image else { return }
        queue.async {
            do {
                let image = try Media.loadImage(data, cfg)
                Task { @MainActor in self.pendingImage = image }
            } catch {
                Task { @MainActor in self.status = "Photo: \(error.localizedDescription)" }
            }
        }
    }

    func attachAudioFile(_ url: URL) {
        guard let cfg = selected?.manifest.frontEnd.audio else { return }
        queue.async {
            do {
                let wave = try Media.loadAudioFile(url, cfg)
                Task { @MainActor in self.pendingAudio = wave }
            } catch {
                Task { @MainActor in self.status = "Audio: \(error.localizedDescription)" }
            }
        }
    }

    func toggleRecording() {
        guard let cfg = selected?.manifest.frontEnd.audio else { return }
        if recording {
            recording = false
            do { pendingAudio = try recorder.stop(cfg) } catch { status = "Recording: \(error.localizedDescription)" }
            return
        }
        Task {
            guard await Recorder.requestPermission() else {
                status = "Microphone access is off: allow it in Settings › Privacy › Microphone"
                return
            }
            do {
                try recorder.start()
                recording = true
            } catch {
                status = "Recording: \(error.localizedDescription)"
            }
        }
    }

    func send(_ text: String) {
        guard let engine = engine, !generating else { return }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let content = Content(text: trimmed.isEmpty ? nil : text, image: pendingImage, audio16k: pendingAudio)
        let message = ChatMessage("user", content)
        let plan: RunnerPlan
        do {
            let continuation = pendingAnswer.map {
                Continuation(imagesBefore: imagesSoFar, audioBefore: audioSoFar, pendingAnswer: $0)
            }
            plan = try engine.planner.plan([message], continuation)
        } catch {
            status = error.localizedDescription
            return
        }
        var shown = text
        if pendingImage != nil { shown = "[photo] " + shown }
        if pendingAudio != nil { shown = "[audio] " + shown }
        lines.append(ChatLine(fromUser: true, text: shown))
        lines.append(ChatLine(fromUser: false, text: ""))
        let index = lines.count - 1
        pendingImage = nil
        pendingAudio = nil
        generating = true
        let before = positions
        let maxNew = ChatModel.maxNewTokens
        queue.async {
            do {
                let turn = try engine.run(plan, positionsBefore: before, maxNewTokens: maxNew) { piece in
                    Task { @MainActor in self.lines[index].text += piece }
                }
                Task { @MainActor in
                    self.imagesSoFar += plan.imageCount
                    self.audioSoFar += plan.audioCount
                    // Ended by a stop id: the template's <|turn_end|> follows; cut (limit or Stop): the last piece,
                    // which the runner emitted but never fed back, comes first in the next turn.
                    self.pendingAnswer = engine.stopTexts.contains(turn.lastPiece) ? "" : turn.lastPiece
                    self.positions = turn.positions
                    self.lines[index].detail = turn.stats?.summary() ?? ""
                    self.generating = false
                }
            } catch {
                Task { @MainActor in
                    self.lines[index].detail = "Failed: \(error.localizedDescription)"
                    // The cache now holds part of this turn: only a new chat is safe.
                    self.status = "The conversation was reset: the next message starts a new chat."
                    self.generating = false
                    self.resetConversation()
                }
            }
        }
    }

    func stop() { engine?.stop() }
}
