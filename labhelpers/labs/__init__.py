"""Pieces only some labs need (the rest of labhelpers is shared by every lab).

  vgg_lab.py   the VGG16 labs (03-05): Grad-CAM by hand, the labs' photos and crops, the cat box, timing
  shortcut.py  lab 07: a marker stamped on one class, the two-class dataset and its small CNN

``lh.vgg_lab`` and ``lh.shortcut`` (and ``from labhelpers import vgg_lab``) map to these modules.
"""
