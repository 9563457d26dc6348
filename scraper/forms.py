"""The admin's "Import catalog" form: one store, and a file upload or a URL."""

from __future__ import annotations

import re
from typing import Any

from django import forms

from scraper.catalog import store_model
from scraper.conf import app_setting, build_client
from scraper.http import FetchError
from scraper.models import ImportJob

Kind = ImportJob.Kind
_CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")


def clean_currency_code(value: str, *, error: type[Exception]) -> str:
    """``"usd "`` → ``"USD"``; "" stays ""; anything but three letters raises ``error``."""
    code = value.strip().upper()
    if code and not _CURRENCY_CODE.match(code):
        raise error(f"{value!r} is not a currency code: give three letters, such as USD, CAD or EUR")
    return code


URL_ONLY_KINDS = {Kind.SHOPIFY, Kind.SITEMAP}
FILE_ONLY_KINDS = {Kind.IMAGE_FOLDER}


class ImportCatalogForm(forms.Form):
    store: forms.ModelChoiceField = forms.ModelChoiceField(
        queryset=None, help_text="The store the products are imported into."
    )
    kind = forms.ChoiceField(
        choices=Kind.choices,
        initial=Kind.AUTO,
        help_text="Detected from the file or URL when left on “Detect”.",
    )
    source_file = forms.FileField(
        required=False,
        label="File",
        help_text="A CSV/TSV file, a Google Merchant feed (XML or TSV), or a ZIP of product photos.",
    )
    source_url = forms.URLField(
        required=False,
        max_length=2000,
        assume_scheme="https",
        label="or URL",
        help_text="A Shopify store, a store's home page or sitemap.xml, a Merchant feed or a CSV.",
    )
    collection = forms.CharField(
        required=False, max_length=200, help_text="Shopify only: import one collection (its handle)."
    )
    currency = forms.CharField(
        required=False,
        max_length=3,
        help_text="ISO code (USD, CAD, EUR…) of prices the source gives without one (Shopify, CSV exports). "
        "Leave empty to use the currency the source or the shop publishes, else the store's (the job "
        "then warns that it was assumed).",
    )
    full_sync = forms.BooleanField(
        required=False,
        label="Full re-sync",
        help_text="Mark this store's products that the source no longer lists as out of stock "
        "(never deleted; skipped when part of the source could not be read).",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["store"].queryset = store_model()._default_manager.all()  # type: ignore[attr-defined]

    def clean_source_file(self) -> Any:
        upload = self.cleaned_data.get("source_file")
        max_bytes = int(app_setting("MAX_UPLOAD_BYTES"))
        if upload is not None and upload.size > max_bytes:
            raise forms.ValidationError(f"The file is larger than {max_bytes // 1024**2:,} MB.")
        return upload

    def clean_currency(self) -> str:
        return clean_currency_code(self.cleaned_data.get("currency") or "", error=forms.ValidationError)

    def import_options(self) -> dict[str, str]:
        """The job's ``options`` from the cleaned form."""
        data = self.cleaned_data
        return {name: data[name] for name in ("collection", "currency") if data.get(name)}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        upload, url, kind = data.get("source_file"), data.get("source_url"), data.get("kind")
        if bool(upload) == bool(url):
            raise forms.ValidationError("Upload a file or give a URL (one of them).")
        if url and kind in FILE_ONLY_KINDS:
            self.add_error("kind", "Photos are imported from an uploaded ZIP, not from a URL.")
        if upload and kind in URL_ONLY_KINDS:
            self.add_error("kind", "A Shopify store or a sitemap is imported from its URL.")
        if url:
            with build_client() as client:
                try:
                    client.check_url(url)  # scheme, credentials, private addresses (resolves the name)
                except FetchError as error:
                    self.add_error("source_url", f"This URL cannot be imported: {error.reason}.")
        return data
