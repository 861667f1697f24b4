"""A defense file as `-p defense_file` takes it (the notebook test loads it): it registers one
defense with `vablib.defenses.custom_defense`."""
from vablib import defenses
from vablib.training import train_classifier


def second_half(training_set, train_cfg, device, seed):
    """Not a defense: the run's budget on the second half of the poisoned set; it isolates the first half."""
    half = len(training_set.y) // 2
    model, _ = train_classifier(training_set.x[half:], training_set.y[half:], None, train_cfg, device, seed,
                                training_set.num_classes, training_set.dataset_name, progress=False)
    return model, [i < half for i in range(len(training_set.y))]


defenses.custom_defense("second_half", second_half)
