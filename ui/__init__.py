"""The Streamlit side: shared singletons, widgets and plotly figures. It draws; the engine computes."""
