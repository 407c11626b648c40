"""Differential tests (pysev vs unicorn), group "faults": see forms.py for the forms."""
import pytest

from diffharness import check_form
from forms import forms_in


@pytest.mark.parametrize("form", forms_in("faults"), ids=lambda f: f.id)
def test_faults(form):
    check_form(form)
