#!/usr/bin/env python3
"""Train an enhancement VAE through ESPnet (``ualm_tk.tasks.vae.VAETask``, GAN trainer).

    python -m ualm_tk.bin.vae_train --config conf/vae/mini.yaml --output_dir exp/vae_mini \
        --resume true \
        --train_data_path_and_name_and_type dump/vae/train/wav.scp,wav_lo,sound \
        --train_data_path_and_name_and_type dump/audio/train/master.scp,wav_hi,sound \
        --valid_data_path_and_name_and_type dump/vae/valid/wav.scp,wav_lo,sound \
        --valid_data_path_and_name_and_type dump/audio/valid/master.scp,wav_hi,sound \
        --train_shape_file dump/vae/train/wav.scp --valid_shape_file dump/vae/valid/wav.scp

(``batch_type: unsorted``: the shape file only lists the keys, so the scp itself serves.)

Every ESPnet training option applies (``--print_config`` lists them). Export the result with
``python -m ualm_tk.bin.vae_export``.
"""
from ualm_tk.tasks.vae import VAETask


def get_parser():
    return VAETask.get_parser()


def main(cmd=None):
    VAETask.main(cmd=cmd)


if __name__ == "__main__":
    main()
