// See MegrezRunner.h for why this wrapper exists. APIs used, all named in our ExecuTorch 1.5 notes and read in
// extension/llm/runner/{llm_runner_helper.h, multimodal_runner.h, image.h, audio.h}: load_tokenizer,
// create_multimodal_runner(model, tokenizer, data_path, Module::LoadMode), MultimodalRunner::{load, prefill,
// generate, stop, reset}, Image(std::vector<uint8_t>&& or std::vector<float>&&, width, height, channels),
// Audio(std::vector<float>&&, batch, bins, frames), GenerationConfig, Stats / stats_to_json_string,
// Module(path, LoadMode)::{execute, method_meta}, MethodMeta::input_tensor_meta, TensorInfo::scalar_type.
// Lines marked UNVERIFIED use a name or overload we have not read in the 1.5 headers: check them when building.

#import "MegrezRunner.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <executorch/extension/llm/runner/audio.h>
#include <executorch/extension/llm/runner/image.h>
#include <executorch/extension/llm/runner/irunner.h>
#include <executorch/extension/llm/runner/llm_runner_helper.h>
#include <executorch/extension/llm/runner/multimodal_input.h>
#include <executorch/extension/llm/runner/multimodal_runner.h>
#include <executorch/extension/llm/runner/stats.h>
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

namespace llm = ::executorch::extension::llm;
using ::executorch::extension::Module;
using ::executorch::runtime::Error;

static NSString *const kDomain = @"MegrezRunner";

static NSError *MakeError(Error code, NSString *what) {
  return [NSError errorWithDomain:kDomain
                             code:(NSInteger)code
                         userInfo:@{NSLocalizedDescriptionKey : [NSString stringWithFormat:@"%@ (ExecuTorch error %d)",
                                                                            what, (int)code]}];
}

static std::string Utf8(NSString *s) { return std::string(s.UTF8String ?: ""); }

@implementation MegrezMel
- (instancetype)initWithData:(NSData *)data bins:(NSInteger)bins frames:(NSInteger)frames {
  if ((self = [super init])) {
    _data = data;
    _bins = bins;
    _frames = frames;
  }
  return self;
}
@end

@implementation MegrezRunner {
  std::unique_ptr<llm::MultimodalRunner> _runner;
  std::unique_ptr<Module> _preprocessor;
  BOOL _floatPixels;  // vision_encoder takes float32 pixels (0-255): it runs on Core ML, which has no uint8 input
}

- (nullable instancetype)initWithModelPath:(NSString *)modelPath
                             tokenizerPath:(NSString *)tokenizerPath
                                     error:(NSError **)error {
  if (!(self = [super init])) return nil;
  auto tokenizer = llm::load_tokenizer(Utf8(tokenizerPath));
  if (!tokenizer) {
    if (error) *error = MakeError(Error::InvalidArgument, @"tokenizer.json could not be loaded: re-copy the bundle");
    return nil;
  }
  // Mmap: pages of the .pte are read on demand and can be dropped under memory pressure; the default (File) reads
  // the whole file into memory. No .ptd: BundleCheck refuses bundles with external weights before we get here.
  _runner = llm::create_multimodal_runner(Utf8(modelPath), std::move(tokenizer), std::nullopt,
                                          Module::LoadMode::Mmap);
  if (!_runner) {
    if (error) *error = MakeError(Error::InvalidProgram, @"model.pte could not be opened as a multimodal program "
                                                         @"(token_embedding, text_decoder, get_max_seq_len): re-export it");
    return nil;
  }
  Error loaded = _runner->load();
  if (loaded != Error::Ok) {
    if (error) *error = MakeError(loaded, @"model.pte failed to load: a backend or kernel it needs is missing from "
                                           @"this app, or the file is damaged; verify the bundle and the recipe");
    return nil;
  }
  _preprocessor = std::make_unique<Module>(Utf8(modelPath), Module::LoadMode::Mmap);
  // The stock runner refuses an image whose dtype differs from the method's input, so read it, as it does.
  _floatPixels = NO;
  auto vision = _preprocessor->method_meta("vision_encoder");
  if (vision.ok()) {
    auto pixels = vision->input_tensor_meta(0);
    _floatPixels = pixels.ok() && pixels->scalar_type() == ::executorch::aten::ScalarType::Float;
  }
  return self;
}

- (BOOL)prefillInput:(llm::MultimodalInput)input what:(NSString *)what error:(NSError **)error {
  std::vector<llm::MultimodalInput> inputs;
  inputs.emplace_back(std::move(input));
  Error e = _runner->prefill(inputs);
  if (e != Error::Ok) {
    if (error) *error = MakeError(e, [NSString stringWithFormat:@"%@ failed; if the conversation is long, start a new "
                                                                @"chat (the context may be full)", what]);
    return NO;
  }
  return YES;
}

- (BOOL)prefillText:(NSString *)text error:(NSError **)error {
  return [self prefillInput:llm::make_text_input(Utf8(text)) what:@"Reading the text" error:error];  // UNVERIFIED: make_text_input(std::string)
}

- (BOOL)prefillImage:(NSData *)chw width:(NSInteger)width height:(NSInteger)height error:(NSError **)error {
  if ((NSInteger)chw.length != 3 * width * height) {
    if (error) *error = MakeError(Error::InvalidArgument, @"image data is not 3 x height x width bytes");
    return NO;
  }
  const uint8_t *bytes = static_cast<const uint8_t *>(chw.bytes);
  llm::Image image = _floatPixels
      ? llm::Image(std::vector<float>(bytes, bytes + chw.length), (int32_t)width, (int32_t)height, 3)
      : llm::Image(std::vector<uint8_t>(bytes, bytes + chw.length), (int32_t)width, (int32_t)height, 3);
  return [self prefillInput:llm::make_image_input(std::move(image)) what:@"Encoding the image" error:error];  // UNVERIFIED: make_image_input(Image&&)
}

- (BOOL)prefillAudio:(NSData *)mel bins:(NSInteger)bins frames:(NSInteger)frames error:(NSError **)error {
  if ((NSInteger)mel.length != (NSInteger)sizeof(float) * bins * frames) {
    if (error) *error = MakeError(Error::InvalidArgument, @"mel data is not bins x frames float32 values");
    return NO;
  }
  const float *values = static_cast<const float *>(mel.bytes);
  std::vector<float> data(values, values + bins * frames);
  llm::Audio audio(std::move(data), 1, (int32_t)bins, (int32_t)frames);
  return [self prefillInput:llm::make_audio_input(std::move(audio)) what:@"Encoding the audio" error:error];  // UNVERIFIED: make_audio_input(Audio&&)
}

- (nullable MegrezMel *)melForWaveform:(NSData *)waveform error:(NSError **)error {
  const float *samples = static_cast<const float *>(waveform.bytes);
  std::vector<float> wave(samples, samples + waveform.length / sizeof(float));
  auto tensor = ::executorch::extension::make_tensor_ptr({(int32_t)wave.size()}, std::move(wave));
  auto result = _preprocessor->execute(
      "audio_preprocessor", std::vector<::executorch::runtime::EValue>{*tensor});  // UNVERIFIED: this overload
  if (!result.ok()) {
    if (error) *error = MakeError(result.error(), @"the bundle's audio_preprocessor failed: re-export the bundle "
                                                   @"(it must contain the audio front end)");
    return nil;
  }
  const auto &mel = result.get().at(0).toTensor();
  if (mel.dim() != 3) {
    if (error) *error = MakeError(Error::InvalidProgram, @"audio_preprocessor did not return [1, bins, frames]");
    return nil;
  }
  NSData *data = [NSData dataWithBytes:mel.const_data_ptr<float>() length:mel.numel() * sizeof(float)];
  return [[MegrezMel alloc] initWithData:data bins:mel.size(1) frames:mel.size(2)];
}

- (BOOL)generateWithText:(NSString *)text
            maxNewTokens:(NSInteger)maxNewTokens
                 onPiece:(void (^)(NSData *bytes))onPiece
                 onStats:(void (^)(NSString *statsJson))onStats
                   error:(NSError **)error {
  llm::GenerationConfig config;
  config.echo = false;                          // the default (true) would send the prompt text back first
  config.max_new_tokens = (int32_t)maxNewTokens;
  config.temperature = 0.0f;                    // greedy, as the SDK's Bundle.chat
  std::vector<llm::MultimodalInput> inputs;
  inputs.emplace_back(llm::make_text_input(Utf8(text)));
  Error e = _runner->generate(
      inputs, config,
      [onPiece](const std::string &piece) {
        // Raw bytes, never an NSString: a piece may end inside a UTF-8 character (MegrezCore's Utf8PieceBuffer).
        onPiece([NSData dataWithBytes:piece.data() length:piece.size()]);
      },
      [onStats](const llm::Stats &stats) {
        onStats([NSString stringWithUTF8String:llm::stats_to_json_string(stats).c_str()] ?: @"{}");
      });
  if (e != Error::Ok) {
    if (error) *error = MakeError(e, @"generation failed; if the conversation is long, start a new chat");
    return NO;
  }
  return YES;
}

- (void)stop {
  _runner->stop();
}

- (void)reset {
  _runner->reset();
}

@end
