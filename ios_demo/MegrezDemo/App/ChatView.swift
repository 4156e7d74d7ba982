import MegrezCore
import PhotosUI
import SwiftUI
import UIKit
import UniformTypeIdentifiers

struct ChatView: View {
    @EnvironmentObject private var chat: ChatModel
    @State private var text = ""
    @State private var photoItem: PhotosPickerItem?
    @State private var showCamera = false
    @State private var importingBundle = false
    @State private var importingAudio = false

    var body: some View {
        NavigationStack {
            VStack(spacing: 8) {
                if !chat.status.isEmpty {
                    Text(chat.status).font(.footnote).foregroundStyle(.secondary)
                        .frame(maxWidth: .infinity, alignment: .leading).padding(.horizontal)
                }
                if let p = chat.importProgress {
                    ProgressView("Copying the bundle…", value: p).padding(.horizontal)
                }
                ScrollViewReader { proxy in
                    List(chat.lines) { line in
                        VStack(alignment: line.fromUser ? .trailing : .leading, spacing: 4) {
                            Text(line.text.isEmpty && !line.fromUser ? "…" : line.text)
                                .textSelection(.enabled)
                            if !line.detail.isEmpty {
                                Text(line.detail).font(.caption2).foregroundStyle(.secondary)
                            }
                        }
                        .frame(maxWidth: .infinity, alignment: line.fromUser ? .trailing : .leading)
                        .id(line.id)
                    }
                    .listStyle(.plain)
                    .onChange(of: chat.lines.last?.text) {
                        if let last = chat.lines.last { proxy.scrollTo(last.id, anchor: .bottom) }
                    }
                }
                attachments
                inputBar
            }
            .navigationTitle(chat.selected?.name ?? "Megrez")
            .navigationBarTitleDisplayMode(.inline)
            .toolbar { toolbar }
        }
        .fileImporter(isPresented: $importingBundle, allowedContentTypes: [.folder]) { result in
            if case .success(let url) = result { chat.importBundle(from: url) }
        }
        .fileImporter(isPresented: $importingAudio, allowedContentTypes: [.audio]) { result in
            if case .success(let url) = result { chat.attachAudioFile(url) }
        }
        .sheet(isPresented: $showCamera) {
            CameraPicker { data in chat.attachPhoto(data) }.ignoresSafeArea()
        }
        .onChange(of: photoItem) {
            guard let item = photoItem else { return }
            Task {
                // The original file (JPEG/HEIC with its EXIF), not a re-rendered image.
                if let data = try? await item.loadTransferable(type: Data.self) { chat.attachPhoto(data) }
                photoItem = nil
            }
        }
    }

    @ToolbarContentBuilder private var toolbar: some ToolbarContent {
        ToolbarItem(placement: .topBarLeading) {
            Menu("Bundle") {
                ForEach(chat.bundles) { b in
                    Button(b.coreMLEncoders.isEmpty ? b.name : "\(b.name) (Core ML)") { chat.open(b) }
                }
                Button("Import…") { importingBundle = true }
                Button("Rescan Documents") { chat.refreshBundles() }
            }
        }
        ToolbarItem(placement: .topBarTrailing) {
            Button("New chat") { chat.newChat() }.disabled(chat.generating || chat.busy)
        }
    }

    @ViewBuilder private var attachments: some View {
        if chat.pendingImage != nil || chat.pendingAudio != nil {
            HStack {
                if let image = chat.pendingImage { Text("Photo \(image.width)×\(image.height)") }
                if let audio = chat.pendingAudio { Text(String(format: "Audio %.1f s", Double(audio.count) / 16000)) }
                Spacer()
                Button("Remove") { chat.pendingImage = nil; chat.pendingAudio = nil }
            }
            .font(.footnote).padding(.horizontal)
        }
    }

    private var inputBar: some View {
        VStack(spacing: 6) {
            HStack {
                PhotosPicker(selection: $photoItem, matching: .images) { Image(systemName: "photo") }
                Button { showCamera = true } label: { Image(systemName: "camera") }
                    .disabled(!UIImagePickerController.isSourceTypeAvailable(.camera))
                Button { chat.toggleRecording() } label: {
                    Image(systemName: chat.recording ? "stop.circle.fill" : "mic")
                }
                Button { importingAudio = true } label: { Image(systemName: "waveform") }
                Spacer()
            }
            .disabled(chat.selected == nil || chat.busy || chat.generating)
            HStack {
                TextField("Message", text: $text, axis: .vertical).textFieldStyle(.roundedBorder)
                if chat.generating {
                    Button("Stop") { chat.stop() }
                } else {
                    Button("Send") {
                        chat.send(text)
                        text = ""
                    }
                    .disabled(chat.busy || chat.selected == nil ||
                              (text.isEmpty && chat.pendingImage == nil && chat.pendingAudio == nil))
                }
            }
        }
        .padding([.horizontal, .bottom])
    }
}

/// The camera through UIImagePickerController; the shot is handed over as JPEG data so that its orientation
/// travels as EXIF and goes through the same decoding path as library photos.
struct CameraPicker: UIViewControllerRepresentable {
    let onPhoto: (Data) -> Void
    @Environment(\.dismiss) private var dismiss

    func makeUIViewController(context: Context) -> UIImagePickerController {
        let picker = UIImagePickerController()
        picker.sourceType = .camera
        picker.delegate = context.coordinator
        return picker
    }

    func updateUIViewController(_ controller: UIImagePickerController, context: Context) {}

    func makeCoordinator() -> Coordinator { Coordinator(self) }

    final class Coordinator: NSObject, UIImagePickerControllerDelegate, UINavigationControllerDelegate {
        let parent: CameraPicker

        init(_ parent: CameraPicker) { self.parent = parent }

        func imagePickerController(_ picker: UIImagePickerController,
                                   didFinishPickingMediaWithInfo info: [UIImagePickerController.InfoKey: Any]) {
            if let image = info[.originalImage] as? UIImage, let data = image.jpegData(compressionQuality: 0.95) {
                parent.onPhoto(data)
            }
            parent.dismiss()
        }

        func imagePickerControllerDidCancel(_ picker: UIImagePickerController) { parent.dismiss() }
    }
}
