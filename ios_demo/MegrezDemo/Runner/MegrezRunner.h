// MegrezRunner: our own Objective-C++ wrapper over ExecuTorch's C++ MultimodalRunner
// (extension/llm/runner/multimodal_runner.h), used instead of ExecuTorchLLM's Swift MultimodalRunner because:
//   1. ExecuTorchLLM converts every token piece with @(token.c_str()): a piece that ends inside a multi-byte UTF-8
//      character becomes nil and Chinese answers lose characters. Here pieces cross to Swift as raw bytes (NSData)
//      and MegrezCore's Utf8PieceBuffer (the Kotlin core's twin, tested on the SDK's vectors) turns them into text.
//   2. ExecuTorchLLM's MultimodalRunner loads the .pte with Module::LoadMode::File (the whole ~3 GB file read into
//      memory: a jetsam kill). Here create_multimodal_runner gets Module::LoadMode::Mmap.
//   3. It has no prefill call and no stats callback; the app needs both (per-input prefill in the SDK's order, TTFT and
//      tok/s from the runner's Stats).
// Never compiled here (no Apple toolchain on our machines): see ios_demo/README.md.

#import <Foundation/Foundation.h>

NS_ASSUME_NONNULL_BEGIN

/// A mel spectrogram from the bundle's audio_preprocessor method: float32 [1, bins, frames].
@interface MegrezMel : NSObject
@property(nonatomic, readonly) NSData *data;
@property(nonatomic, readonly) NSInteger bins;
@property(nonatomic, readonly) NSInteger frames;
@end

@interface MegrezRunner : NSObject

/// Loads tokenizer.json and the .pte (mmap) and every method the runner needs; throws with what to do.
- (nullable instancetype)initWithModelPath:(NSString *)modelPath
                             tokenizerPath:(NSString *)tokenizerPath
                                     error:(NSError **)error NS_SWIFT_NAME(init(modelPath:tokenizerPath:));

/// One text input (the plan's text pieces carry the template's markers; the C++ tokenizer makes them special ids).
- (BOOL)prefillText:(NSString *)text error:(NSError **)error NS_SWIFT_NAME(prefillText(_:));

/// One image input: uint8 planar CHW, 3 x height x width (MegrezCore's RgbImage.toChw()). Handed to a vision
/// encoder on Core ML as float32 of the same values: the program says which it takes.
- (BOOL)prefillImage:(NSData *)chw
               width:(NSInteger)width
              height:(NSInteger)height
               error:(NSError **)error NS_SWIFT_NAME(prefillImage(_:width:height:));

/// One audio input: the mel of one clip, float32 [1, bins, frames].
- (BOOL)prefillAudio:(NSData *)mel
                bins:(NSInteger)bins
              frames:(NSInteger)frames
               error:(NSError **)error NS_SWIFT_NAME(prefillAudio(_:bins:frames:));

/// The bundle's audio_preprocessor method on one clip of 16 kHz float32 samples (a Module over the same file, mmap).
- (nullable MegrezMel *)melForWaveform:(NSData *)waveform
                                 error:(NSError **)error NS_SWIFT_NAME(melSpectrogram(waveform:));

/// Prefills `text` (never empty: the runner refuses an empty input list) and generates greedily up to
/// `maxNewTokens`. `onPiece` gets each token's raw bytes on the calling thread; `onStats` the runner's stats JSON
/// (stats_to_json_string). Returns when an EOS id, the limit or `stop` ends the answer.
- (BOOL)generateWithText:(NSString *)text
            maxNewTokens:(NSInteger)maxNewTokens
                 onPiece:(void (^)(NSData *bytes))onPiece
                 onStats:(void (^)(NSString *statsJson))onStats
                   error:(NSError **)error NS_SWIFT_NAME(generate(text:maxNewTokens:onPiece:onStats:));

/// Ends a running generate after the current token (an atomic flag in the runner: safe from any thread).
- (void)stop;

/// Forgets the conversation: the KV cache position goes back to 0 (a new chat).
- (void)reset;

@end

NS_ASSUME_NONNULL_END
