"""Differential tests (pysev vs unicorn), group "bits": see forms.py for the forms."""
import pytest

from diffharness import check_form
from forms import forms_in


@pytest.mark.parametrize("form", forms_in("bits"), ids=lambda f: f.id)
def test_bits(form):
    check_form(form)
