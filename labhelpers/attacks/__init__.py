"""Attacks on the network and on its explanation, and how to measure them.

    adv = fgsm(model, images, labels, eps=0.05)                     # adv.adversarial, adv.accuracy
    adv = pgd(model, images, labels, eps=0.05, steps=40)            # random start, best iterate kept
    curve = robustness_curve(model, images, labels, [0, 0.02, 0.05], attack="pgd")
    surrogate = SoftplusSurrogate(beta=20)(model)                   # ReLU -> softplus, shared weights
    man = manipulate_explanation(model, images, corner_mask((28, 28), "top-left"), method="gradcam")
    stab = max_sensitivity(method, model, images, radius=0.02)      # Yeh et al. 2019

FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018) under an L-infinity budget ``eps``,
untargeted (``target=None``: push away from ``labels``) or targeted (``target``: one class for all
images or one per image), with a margin loss on the logits (Carlini & Wagner: the best other logit
minus the class logit) or cross-entropy. Every iterate is projected onto the eps-ball around the
image and clipped to the valid input range ``clip``. PGD keeps, per image, the iterate with the
highest loss (so a success met on the way is never lost). Images are used as given (apply the
model's preprocessing first); ``eps`` and ``clip`` are in those units.

Explanation manipulation (Ghorbani et al. 2019; Dombrowski et al. 2019): a perturbation inside the
eps-ball that keeps the predicted class (and its probability within ``prob_tolerance``) while the
explanation (saliency, SmoothGrad or Grad-CAM) is pulled toward a target map. A ReLU network's
input gradient is piecewise constant, so the gradient *of the explanation* is zero almost
everywhere: the explanation is differentiated on :class:`SoftplusSurrogate` (every ReLU-like
nonlinearity replaced by softplus with a large ``beta``), and measured on the real model.

The caller's model is never changed: the logits come from the Explainer's linear-head rebuild and
the surrogate is another rebuild from views of the same layers (:mod:`labhelpers.modifiers`).

  adversarial.py   losses, fgsm, pgd, robustness_curve, AttackResult, RobustnessResult
  surrogate.py     SoftplusSurrogate, softplus_rebuild, smooth_activation
  manipulation.py  manipulate_explanation, real_maps, corner_mask, region_mass, ManipulationResult
  stability.py     max_sensitivity, StabilityResult
"""

from __future__ import annotations

from .adversarial import AttackResult, RobustnessResult, attack_loss, fgsm, pgd, robustness_curve
from .manipulation import ManipulationResult, corner_mask, manipulate_explanation, real_maps, region_mass
from .stability import StabilityResult, max_sensitivity
from .surrogate import SoftplusSurrogate, smooth_activation, softplus_rebuild

__all__ = ["fgsm", "pgd", "robustness_curve", "attack_loss", "AttackResult", "RobustnessResult",
           "SoftplusSurrogate", "softplus_rebuild", "smooth_activation", "corner_mask", "region_mass",
           "manipulate_explanation", "ManipulationResult", "real_maps", "max_sensitivity", "StabilityResult"]
