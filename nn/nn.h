/* nn/nn.h - the one header of the nn layer: a small PyTorch-style neural
 * network library built on autodiff's public API.
 *
 *   module.h      modules and layers (Linear, Conv2d, BatchNorm2d, ...),
 *                 Sequential, parameters, train/eval, summary
 *   rnn.h         RNN, GRU, LSTM: cells and sequence layers
 *   transformer.h multi-head attention, positional embeddings, the
 *                 pre-norm decoder block
 *   init.h        Xavier/Kaiming initialisers
 *   loss.h        losses (MSE, cross-entropy, BCE with logits, ...) and
 *                 L1/L2 penalties
 *   optim.h       SGD, Adam, AdamW, RMSprop, schedules, clipping,
 *                 gradient-norm report
 *   train.h       progress bar, evaluation, confusion matrix
 *   trainer.h     the training loop: replayed steps, evaluate, fit with
 *                 callbacks, checkpoints that resume exactly
 *   data.h        IDX (MNIST) and CSV data, mini-batch loader
 *   checkpoint.h  safetensors save and load
 *   modcheck.h    nn_gradcheck: a module's parameter gradients checked
 *   state.h       whole-state checkpoints: model, optimiser, random
 *                 streams, epoch and step in one file
 *
 * Link with autodiff_nn and autodiff (pkg-config autodiff_nn).
 */
#ifndef NN_NN_H
#define NN_NN_H

#include <autodiff/autodiff.h>

#include "checkpoint.h"
#include "data.h"
#include "init.h"
#include "loss.h"
#include "modcheck.h"
#include "module.h"
#include "optim.h"
#include "rnn.h"
#include "state.h"
#include "train.h"
#include "trainer.h"
#include "transformer.h"

#endif
