"""Differential tests (pysev vs unicorn), group "string": see forms.py for the forms."""
import pytest

from diffharness import check_form
from forms import forms_in


@pytest.mark.parametrize("form", forms_in("string"), ids=lambda f: f.id)
def test_string(form):
    check_form(form)
